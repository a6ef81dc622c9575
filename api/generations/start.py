"""Starting a GenerationWorkflow: the whole of POST /generate (`start_generation`), and what a
schedule's runs share with it (`generation_start`: request, search attributes, memo, summary).

With an `Idempotency-Key` the task id is derived from the key (`api.generations.idempotency`),
and Temporal's workflow id policies make a repeat return the same task instead of a second
generation.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.async_manifests import AsyncManifestRegistry
from api.errors import ApiError, TemporalUnavailable
from api.generations.idempotency import (
    IdempotencyConflict,
    body_fingerprint,
    check_idempotency_key,
    idempotent_task_id,
)
from api.generations.inputs import checked_callback_url, inline_images_removed, stage_image_inputs
from api.inventory import InventoryCache, check_model_names
from api.schemas import GenerateCreate, GenerateOptions
from api.settings import Settings
from api.tasks.queues import queue_pollers
from manifests.definitions import WorkflowManifest
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


def check_params_size(params: Mapping[str, Any]) -> None:
    """ParamsTooLarge when `params` take more than MAX_PARAMS_BYTES as JSON."""
    size = len(json.dumps(params, separators=(",", ":")))
    if size > MAX_PARAMS_BYTES:
        raise ParamsTooLarge(
            f"params take {size} bytes as JSON; the limit is {MAX_PARAMS_BYTES}"
            " (pass large inputs such as images by file name, not inline)",
            loc=["body", "params"],
        )


def new_task_id(workflow_id: str, now: datetime | None = None) -> str:
    """Readable and unique: "<workflow_id>-<yyyymmdd-hhmmss>-<6 hex>" (UTC)."""
    moment = now or datetime.now(UTC)
    return f"{workflow_id}-{moment:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def static_summary(workflow_id: str, params: Mapping[str, Any]) -> str:
    """The Web UI's one-line summary, e.g. `flux_wavespeed: "a majestic cat on a throne…"`."""
    prompt = params.get("prompt")
    if isinstance(prompt, str) and prompt:
        text = prompt if len(prompt) <= _SUMMARY_TEXT_CHARS else prompt[:_SUMMARY_TEXT_CHARS] + "…"
        return f'{workflow_id}: "{text}"'
    shown = ", ".join(f"{k}={v}" for k, v in list(params.items())[:4])
    return f"{workflow_id}: {shown}" if shown else workflow_id


@dataclass(frozen=True)
class GenerationStart:
    """What Temporal is given to start a GenerationWorkflow on the control queue: the request,
    tagged (search attributes), remembered (memo) and summarised for the Web UI."""

    request: GenerationRequest
    search_attributes: TypedSearchAttributes
    memo: dict[str, Any]
    static_summary: str
    priority: Priority

    async def start(self, client: Client, task_id: str, *, idempotent: bool) -> None:
        """Start it as task `task_id`. Idempotent: a running task with this id is returned as
        is (USE_EXISTING), a closed one is never run again (REJECT_DUPLICATE, which raises
        WorkflowAlreadyStartedError): one key, one generation, also for concurrent repeats."""
        policies: dict[str, Any] = {}
        if idempotent:
            policies = {
                "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
                "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
            }
        await client.start_workflow(
            GENERATION_WORKFLOW,
            self.request,
            id=task_id,
            task_queue=CONTROL_TASK_QUEUE,
            search_attributes=self.search_attributes,
            memo=self.memo,
            static_summary=self.static_summary,
            priority=self.priority,
            # No request_eager_start: it saves ~8 ms on a lone job, but under a burst of POSTs it
            # cut their throughput by a third to two thirds and delayed a backlog's first job
            # (bench/overhead.py, A/B on 2 cores).
            **policies,
        )

    def schedule_action(self, schedule_id: str) -> ScheduleActionStartWorkflow:
        """The same start as the action of schedule `schedule_id`, which starts it once per run."""
        return ScheduleActionStartWorkflow(
            GENERATION_WORKFLOW,
            self.request,
            id=schedule_id,
            task_queue=CONTROL_TASK_QUEUE,
            typed_search_attributes=self.search_attributes,
            memo=self.memo,
            static_summary=self.static_summary,
            priority=self.priority,
        )


def generation_start(
    manifest: WorkflowManifest,
    params: dict[str, Any],
    options: GenerateOptions | None,
    *,
    callback_url: str | None = None,
    public_url: str | None = None,
    memo: Mapping[str, Any] | None = None,
    summary_note: str | None = None,
) -> GenerationStart:
    """The start of one generation of `manifest` with `params` (already checked and staged);
    `memo` adds entries beside the request, `summary_note` a parenthesis to the summary."""
    request = GenerationRequest(
        workflow_id=manifest.id,
        params=params,
        options=GenerationOptions(
            worker=options.worker if options else None,
            priority=options.priority if options else None,
            callback_url=callback_url,
            public_url=public_url,
        ),
    )
    summary = static_summary(manifest.id, params)
    priority = options.priority if options is not None else None
    return GenerationStart(
        request=request,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SA_WORKFLOW, manifest.id),
                SearchAttributePair(SA_POOL, manifest.pool),
            ]
        ),
        memo={REQUEST_MEMO: request.model_dump(mode="json"), **(memo or {})},
        static_summary=f"{summary} ({summary_note})" if summary_note else summary,
        priority=Priority(priority_key=priority) if priority is not None else Priority.default,
    )


async def start_generation(
    body: GenerateCreate,
    temporal: Client,
    manifests: AsyncManifestRegistry,
    settings: Settings,
    *,
    base_url: str,
    idempotency_key: str | None = None,
    key_scope: str = "",
    inventory: InventoryCache | None = None,
) -> str:
    """Check the request, stage its inputs and start its workflow; returns the task id.

    Raises (before anything reaches Temporal) UnknownWorkflow / ParamsInvalid, ParamsTooLarge,
    RequestInputsInvalid, UnknownWorker, ModelNotFound (a model file no GPU of the pool has,
    after `inventory`); with an `idempotency_key` (scoped by `key_scope`, the
    caller's API key), a repeat returns the first task's id and the same key with another body
    raises IdempotencyConflict.
    """
    fingerprint: str | None = None
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
        fingerprint = body_fingerprint(body)
        task_id = idempotent_task_id(idempotency_key, scope=key_scope)
        # A repeat is answered from Temporal before anything else runs: no image is staged
        # again, and a pinned worker that has gone away since does not fail the retry.
        if await _check_same_body(temporal, task_id, fingerprint):
            return task_id
    else:
        task_id = new_task_id(body.workflow_id)
    # Inline (base64) images are stored apart, under their own limit (api/generations/inputs.py).
    check_params_size(inline_images_removed(body.params))
    # Reject bad input before anything reaches Temporal (raises UnknownWorkflow / ParamsInvalid).
    manifest, checked = await manifests.checked(body.workflow_id, body.params)
    callback_url = await checked_callback_url(body, settings)
    options = body.options
    if options is not None and options.worker:
        queue = worker_task_queue(manifest.pool, options.worker)
        if not await queue_pollers(temporal, queue):
            raise UnknownWorker(
                f"no GPU worker '{options.worker}' is polling {queue}",
                loc=["body", "options", "worker"],
            )
    if inventory is not None:
        check_model_names(
            manifest,
            checked,
            await inventory.get(temporal, manifest.pool),
            worker=options.worker if options is not None else None,
        )
    params = await stage_image_inputs(manifest, body.params, settings)
    start = generation_start(
        manifest,
        params,
        options,
        callback_url=callback_url,
        public_url=base_url if callback_url else None,
        memo={IDEMPOTENCY_MEMO: {"body_sha256": fingerprint}} if fingerprint is not None else None,
    )
    try:
        await start.start(temporal, task_id, idempotent=fingerprint is not None)
    except WorkflowAlreadyStartedError:
        pass  # a closed task from an earlier request with this key: compared below
    except RPCError as err:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise TemporalUnavailable(f"Temporal is not reachable: {err.message}") from err
        raise
    if fingerprint is not None:
        # Another request with this key may have started it first, with another body.
        await _check_same_body(temporal, task_id, fingerprint)
    return task_id


async def _check_same_body(temporal: Client, task_id: str, fingerprint: str) -> bool:
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
