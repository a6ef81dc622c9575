"""POST /generate: validate against the manifest, then start a GenerationWorkflow.

With an `Idempotency-Key` header the task id is derived from the key
(`api.generations.idempotency`), and Temporal's workflow id policies make a repeat return the
same task instead of a second generation.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.access import presented_keys
from api.deps import BaseUrlDep, ManifestsDep, SettingsDep, TemporalDep
from api.errors import ApiError, TemporalUnavailable
from api.generations.idempotency import (
    IdempotencyConflict,
    body_fingerprint,
    check_idempotency_key,
    idempotent_task_id,
)
from api.generations.inputs import checked_callback_url, inline_images_removed, stage_image_inputs
from api.responses import error_responses
from api.schemas import GenerateAccepted, GenerateCreate
from api.tasks.queues import queue_pollers
from api.tasks.reader import status_url
from temporal_workflows.names import (
    CONTROL_TASK_QUEUE,
    GENERATION_WORKFLOW,
    IDEMPOTENCY_MEMO,
    REQUEST_MEMO,
    SA_POOL,
    SA_WORKFLOW,
    worker_task_queue,
)
from temporal_workflows.payloads import GenerationOptions, GenerationRequest

router = APIRouter(tags=["generate"])

_SUMMARY_TEXT_CHARS = 60


# Temporal refuses payloads over 2 MiB and the request travels twice (input and memo); a bigger
# request would never start or leave a workflow stuck (temporal-notes.md §3k, §5.8).
MAX_PARAMS_BYTES = 256 * 1024


class ParamsTooLarge(ApiError):
    status_code = 413
    error_type = "params_too_large"


class UnknownWorker(ApiError):
    status_code = 422
    error_type = "unknown_worker"


def new_task_id(workflow_id: str, now: datetime | None = None) -> str:
    """Readable and unique: "<workflow_id>-<yyyymmdd-hhmmss>-<6 hex>" (UTC)."""
    moment = now or datetime.now(UTC)
    return f"{workflow_id}-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def static_summary(workflow_id: str, params: dict[str, Any]) -> str:
    """The Web UI's one-line summary, e.g. `flux_wavespeed: "a majestic cat on a throne…"`."""
    prompt = params.get("prompt")
    if isinstance(prompt, str) and prompt:
        text = prompt if len(prompt) <= _SUMMARY_TEXT_CHARS else prompt[:_SUMMARY_TEXT_CHARS] + "…"
        return f'{workflow_id}: "{text}"'
    shown = ", ".join(f"{k}={v}" for k, v in list(params.items())[:4])
    return f"{workflow_id}: {shown}" if shown else workflow_id


@router.post(
    "/generate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GenerateAccepted,
    responses=error_responses(
        409,
        413,
        422,
        503,
        descriptions={
            409: "The Idempotency-Key was already used with a different body.",
            422: "Unknown workflow or bad parameters (or a bad Idempotency-Key); one entry per"
            " bad field.",
        },
    ),
    summary="Start a generation",
)
async def generate(
    body: GenerateCreate,
    http_request: Request,
    response: Response,
    temporal: TemporalDep,
    manifests: ManifestsDep,
    base_url: BaseUrlDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Any unique string (e.g. a UUID) per intended generation: a repeat with"
            " the same key returns the same task_id and starts nothing; the same key with a"
            " different body is a 409. Remembered as long as Temporal keeps the finished task"
            " (the namespace's retention)."
        ),
    ] = None,
) -> GenerateAccepted:
    fingerprint: str | None = None
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
        fingerprint = body_fingerprint(body)
        task_id = idempotent_task_id(idempotency_key, scope=_key_scope(http_request))
        # A repeat is answered from Temporal before anything else runs: no image is staged
        # again, and a pinned worker that has gone away since does not fail the retry.
        if await _check_same_body(temporal, task_id, fingerprint):
            return _accepted(response, base_url, task_id)
    # Inline (base64) images are stored apart, under their own limit (api/generations/inputs.py).
    size = len(json.dumps(inline_images_removed(body.params), separators=(",", ":")))
    if size > MAX_PARAMS_BYTES:
        raise ParamsTooLarge(
            f"params take {size} bytes as JSON; the limit is {MAX_PARAMS_BYTES}"
            " (pass large inputs such as images by file name, not inline)",
            loc=["body", "params"],
        )
    # Reject bad input before anything reaches Temporal (raises UnknownWorkflow / ParamsInvalid).
    manifest, _ = await manifests.checked(body.workflow_id, body.params)
    callback_url = await checked_callback_url(body, settings)
    params = await stage_image_inputs(manifest, body.params, settings)
    options = body.options
    if options is not None and options.worker:
        queue = worker_task_queue(manifest.pool, options.worker)
        if not await queue_pollers(temporal, queue):
            raise UnknownWorker(
                f"no GPU worker '{options.worker}' is polling {queue}",
                loc=["body", "options", "worker"],
            )
    request = GenerationRequest(
        workflow_id=body.workflow_id,
        params=params,
        options=GenerationOptions(
            worker=options.worker if options else None,
            priority=options.priority if options else None,
            callback_url=callback_url,
            public_url=base_url if callback_url else None,
        ),
    )
    memo: dict[str, Any] = {REQUEST_MEMO: request.model_dump(mode="json")}
    if fingerprint is not None:
        memo[IDEMPOTENCY_MEMO] = {"body_sha256": fingerprint}
        # A running task with this id is returned as is (USE_EXISTING), a closed one is never
        # run again (REJECT_DUPLICATE): one key, one generation, also for concurrent repeats.
        policies: dict[str, Any] = {
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        }
    else:
        task_id = new_task_id(body.workflow_id)
        policies = {}
    try:
        await temporal.start_workflow(
            GENERATION_WORKFLOW,
            request,
            id=task_id,
            task_queue=CONTROL_TASK_QUEUE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SA_WORKFLOW, body.workflow_id),
                    SearchAttributePair(SA_POOL, manifest.pool),
                ]
            ),
            memo=memo,
            static_summary=static_summary(body.workflow_id, params),
            priority=(
                Priority(priority_key=options.priority)
                if options is not None and options.priority is not None
                else Priority.default
            ),
            # No request_eager_start: it saves ~8 ms on a lone job, but under a burst of POSTs it
            # cut their throughput by a third to two thirds and delayed a backlog's first job
            # (bench/overhead.py, A/B on 2 cores).
            **policies,
        )
    except WorkflowAlreadyStartedError:
        pass  # a closed task from an earlier request with this key: compared below
    except RPCError as err:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise TemporalUnavailable(f"Temporal is not reachable: {err.message}") from err
        raise
    if fingerprint is not None:
        # Another request with this key may have started it first, with another body.
        await _check_same_body(temporal, task_id, fingerprint)
    return _accepted(response, base_url, task_id)


def _accepted(response: Response, base_url: str, task_id: str) -> GenerateAccepted:
    url = status_url(base_url, task_id)
    response.headers["Location"] = url
    return GenerateAccepted(task_id=task_id, status_url=url)


def _key_scope(request: Request) -> str:
    """Keys of different API key holders never meet; with keys off there is one scope."""
    keys = request.app.state.api_keys
    if not keys.enabled:
        return ""
    presented = presented_keys(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )
    return next((key for key in presented if keys.matches(key)), "")


async def _check_same_body(temporal: TemporalDep, task_id: str, fingerprint: str) -> bool:
    """True when the task with this key's id exists with this body, False when there is none;
    IdempotencyConflict when it was started with another body."""
    try:
        desc = await temporal.get_workflow_handle(task_id).describe()
        stored = await desc.memo_value(IDEMPOTENCY_MEMO, default=None)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise TemporalUnavailable(f"Temporal is not reachable: {err.message}") from err
        raise
    stored_hash = stored.get("body_sha256") if isinstance(stored, dict) else None
    if stored_hash != fingerprint:
        raise IdempotencyConflict(task_id)
    return True
