"""The `notify` activity (control worker): POST a generation's outcome to its callback URL.

The body is the task as GET /tasks/{id} shows it once closed, plus the delivery id; its download
URLs are signed with the API's URL signing key (the worker loads the same key as the API), so a
receiver can fetch the files without an API key. Headers:
`X-Comfy-Delivery: <id>` (the same on every retry of one delivery, so receivers can de-duplicate)
and `X-Comfy-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body bytes under the shared
secret COMFY_WEBHOOK_SECRET. A receiver verifies by computing the same HMAC over the raw body it
received and comparing in constant time (`verify_signature` below; docs/webhooks.md).

Temporal retries this activity with backoff (GenerationWorkflow's NOTIFY_RETRY_POLICY). A 4xx
from the receiver, except 408 and 429, is final: retrying the same body cannot change the answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.generation.failures import reported
from activities.io.outbound_urls import UrlRefused, check_url, pinned_request
from activities.workers.logs import job_log_context
from activities.workers.settings import WebhookSettings
from api.contract.signed_urls import UrlSigner
from api.contract.task_view import finished_view, status_url
from temporal_workflows.failures import ErrorType, failure_kind
from temporal_workflows.names import NOTIFY_ACTIVITY
from temporal_workflows.payloads import NotifyInput, NotifyResult

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Comfy-Signature"
DELIVERY_HEADER = "X-Comfy-Delivery"
EVENT_HEADER = "X-Comfy-Event"
EVENT_NAME = "generation.finished"

# Receivers' answers worth another try; any other 4xx is final.
_RETRYABLE_CLIENT_ERRORS = {408, 429}


def sign_body(secret: str, body: bytes) -> str:
    """The X-Comfy-Signature value of `body`: "sha256=" + hex HMAC-SHA256 under `secret`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute over the raw body, compare in constant time."""
    if not header:
        return False
    return hmac.compare_digest(sign_body(secret, body), header.strip())


def webhook_body(
    request: NotifyInput, signer: UrlSigner | None = None, *, signed_at: float | None = None
) -> dict[str, Any]:
    """The task as GET /tasks/{id} shows it once closed (the API's own view, so the two never
    drift apart), with the delivery id. With a signer, download URLs are signed at `signed_at`."""
    base_url = (request.public_url or "").rstrip("/")
    result, error = finished_view(
        request.status,
        request.result,
        request.error,
        request.cancel_reason,
        base_url,
        signer,
        signed_at=signed_at,
    )
    return {
        "event": EVENT_NAME,
        "delivery_id": request.delivery_id,
        "task_id": request.task_id,
        "workflow_id": request.workflow_id,
        "status": request.status,
        "status_url": status_url(base_url, request.task_id),
        "result": result.model_dump(mode="json") if isinstance(result, BaseModel) else result,
        "error": error.model_dump(mode="json") if error is not None else None,
        "cancel_reason": request.cancel_reason if request.status == "CANCELLED" else None,
    }


def encode_body(body: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the same input always gives the same bytes and signature."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


class WebhookActivities:
    """`notify`, bound to the signing secret, the outbound-address policy and the download-URL
    signer of this worker. Without `url_signer` download URLs go out unsigned (with API keys on,
    a receiver then needs a key to follow them)."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        allow_private: bool | None = None,
        timeout: float = 10.0,
        url_signer: UrlSigner | None = None,
    ) -> None:
        self._url_signer = url_signer
        # What the caller leaves open comes from COMFY_WEBHOOK_SECRET and
        # COMFY_ALLOW_PRIVATE_CALLBACK_URLS, as the control worker reads them.
        configured = WebhookSettings()
        self._secret = secret if secret is not None else configured.webhook_secret
        self._allow_private = (
            allow_private if allow_private is not None else configured.allow_private_callback_urls
        )
        self._timeout = timeout
        if self._secret is None:
            logger.warning("COMFY_WEBHOOK_SECRET is not set: webhooks are sent without a signature")

    @activity.defn(name=NOTIFY_ACTIVITY)
    async def notify(self, request: NotifyInput) -> NotifyResult:
        with (
            job_log_context(
                request.task_id, workflow=request.workflow_id, attempt=activity.info().attempt
            ),
            reported(request.task_id, logger),
        ):
            return await self._notify(request)

    async def _notify(self, request: NotifyInput) -> NotifyResult:
        info = activity.info()
        attempt = info.attempt
        # URLs expire one TTL after the first attempt was scheduled: every retry of a delivery
        # then sends the same bytes (and X-Comfy-Signature), which receivers may de-duplicate on.
        body = encode_body(
            webhook_body(request, self._url_signer, signed_at=info.scheduled_time.timestamp())
        )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "comfy-temporal-webhook",
            DELIVERY_HEADER: request.delivery_id,
            EVENT_HEADER: EVENT_NAME,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign_body(self._secret, body)
        try:
            # Checked again here, not only at submission: DNS may answer differently by now.
            target = await check_url(request.url, allow_private=self._allow_private)
        except UrlRefused as err:
            raise _error(ErrorType.WEBHOOK_REFUSED, attempt, None, reason=err) from None
        try:
            # No proxies from the environment: the connection must go to the checked address.
            async with httpx.AsyncClient(
                timeout=self._timeout, trust_env=False, follow_redirects=False
            ) as http:
                response = await http.send(
                    pinned_request(http, "POST", target, headers=headers, content=body)
                )
        except httpx.HTTPError as err:
            reason = str(err) or type(err).__name__
            raise _error(
                ErrorType.WEBHOOK_UNREACHABLE, attempt, None, url=request.url, reason=reason
            ) from None
        code = response.status_code
        if 200 <= code < 300:
            return NotifyResult(status_code=code, attempt=attempt, delivered_at=datetime.now(UTC))
        text = response.text[:200].strip()
        message = f"{request.url} answered {code}" + (f": {text}" if text else "")
        final = 300 <= code < 500 and code not in _RETRYABLE_CLIENT_ERRORS
        if 300 <= code < 400:
            message += " (redirects are not followed)"
        raise _error(
            ErrorType.WEBHOOK_REJECTED if final else ErrorType.WEBHOOK_FAILED,
            attempt,
            code,
            reason=message,
        )


def _error(
    error_type: ErrorType, attempt: int, status_code: int | None, **text: object
) -> ApplicationError:
    kind = failure_kind(error_type)
    # The workflow reads attempt and status code from the details of the last error. Benign: a
    # receiver that is down is expected, and logged in one line by `reported`.
    return ApplicationError(
        kind.text.format(**text),
        {"attempt": attempt, "status_code": status_code},
        type=str(error_type),
        non_retryable=not kind.retryable,
        category=ApplicationErrorCategory.BENIGN,
    )
