"""Starting a GenerationWorkflow: the whole of POST /generate (`start_generation`), and what a
schedule's runs share with it (`generation_start`: request, search attributes, memo, summary; the
shape itself is activities/generation/starts.py, which a batch's items are started with too).

With an `Idempotency-Key` the task id is derived from the key (`api.generations.idempotency`),
and Temporal's workflow id policies make a repeat return the same task instead of a second
generation.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.generation.admission import PoolAdmission
from activities.generation.routing import Router
from activities.generation.starts import GenerationStart, build_generation_start, static_summary
from activities.io.output_store import OutputStore
from activities.workers.inventory import InventoryCache
from api.async_manifests import AsyncManifestRegistry
from api.errors import ApiError, TemporalUnavailable
from api.generations.admission import check_admission
from api.generations.idempotency import (
    IdempotencyConflict,
    body_fingerprint,
    check_idempotency_key,
    idempotent_task_id,
)
from api.generations.inputs import (
    check_model_urls,
    checked_callback_url,
    inline_images_removed,
    stage_image_inputs,
)
from api.inventory import check_model_names
from api.schemas import GenerateCreate, GenerateOptions
from api.settings import Settings
from api.tasks.queues import queue_pollers
from manifests.definitions import WorkflowManifest
from temporal_workflows.names import IDEMPOTENCY_MEMO, worker_task_queue
from temporal_workflows.payloads import (
    GenerationOptions,
    PreparedPrompt,
    RouteInput,
    RoutingDecision,
)

# Re-exported: schedules and tests take the start's shape from here.
__all__ = ["GenerationStart", "generation_start", "start_generation", "static_summary"]

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


def generation_start(
    manifest: WorkflowManifest,
    params: dict[str, Any],
    options: GenerateOptions | None,
    *,
    callback_url: str | None = None,
    public_url: str | None = None,
    memo: Mapping[str, Any] | None = None,
    summary_note: str | None = None,
    prepared: PreparedPrompt | None = None,
    routing: RoutingDecision | None = None,
) -> GenerationStart:
    """The start of one generation of `manifest` with `params` (already checked and staged);
    `memo` adds entries beside the request, `summary_note` a parenthesis to the summary;
    `prepared`, the graph rendered now, spares the workflow its render step (a schedule's runs
    render when they run)."""
    return build_generation_start(
        manifest.id,
        manifest.pool,
        params,
        GenerationOptions(
            worker=options.worker if options else None,
            priority=options.priority if options else None,
            callback_url=callback_url,
            public_url=public_url,
        ),
        memo=memo,
        summary_note=summary_note,
        prepared=prepared,
        routing=routing,
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
    store: OutputStore | None = None,
    admission: PoolAdmission | None = None,
    router: Router | None = None,
) -> str:
    """Check the request, stage its inputs and start its workflow; returns the task id.

    Raises (before anything reaches Temporal) UnknownWorkflow / ParamsInvalid, ParamsTooLarge,
    RequestInputsInvalid, UnknownWorker, ModelNotFound (a model file no GPU of the pool has,
    after `inventory`); PoolFull when `admission` finds the workflow's pool full; with an
    `idempotency_key` (scoped by `key_scope`, the caller's API key), a repeat returns the first
    task's id and the same key with another body raises IdempotencyConflict. `router` sends the
    job's first try to a GPU queue now (docs/routing.md), sparing the workflow that step.
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
    # Rendered here, so the workflow goes straight to the GPU step (no render step of its own).
    manifest, prepared = await manifests.rendered(body.workflow_id, body.params)
    checked = prepared.params
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
    params = await stage_image_inputs(manifest, body.params, settings, store)
    await check_model_urls(manifest, params, settings)
    if params != body.params:  # inline images were stored: the graph takes their references
        prepared = await manifests.prepared(manifest, params)
    # Last, so that a refused job costs nothing else, and an admitted one counts at once.
    await check_admission(admission, manifest.pool)
    routing = None
    if router is not None and not (options is not None and options.worker):
        request = RouteInput(task_id=task_id, pool=manifest.pool, prompt=prepared.prompt)
        routing = await router.route(temporal, request)
    start = generation_start(
        manifest,
        params,
        options,
        callback_url=callback_url,
        public_url=base_url if callback_url else None,
        memo={IDEMPOTENCY_MEMO: {"body_sha256": fingerprint}} if fingerprint is not None else None,
        prepared=prepared,
        routing=routing,
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
