"""POST /batches: check every item of a batch, stage its inputs, and start its BatchWorkflow.

Every item is checked before anything starts, and all problems are answered at once (one 422,
each entry naming the item and the field). The batch then travels compact to the BatchWorkflow,
which starts the items as ordinary tasks (activities/generation/batch_items.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from activities.generation.admission import PoolAdmission
from activities.io.output_store import OutputStore
from activities.workers.inventory import InventoryCache
from api.async_manifests import AsyncManifestRegistry
from api.batches.schemas import BatchCreate
from api.errors import ApiError, TemporalUnavailable
from api.generations.admission import check_admission
from api.generations.inputs import (
    RequestInputsInvalid,
    check_model_urls,
    checked_callback_url,
    inline_images_removed,
    stage_image_inputs,
)
from api.generations.start import MAX_PARAMS_BYTES, UnknownWorker, new_task_id
from api.inventory import ModelNotFound, check_model_names
from api.schemas import GenerateCreate
from api.settings import Settings
from api.tasks.queues import queue_pollers
from manifests.definitions import WorkflowManifest
from manifests.errors import ParamsInvalid
from manifests.validation import validate_params
from temporal_workflows.batch_payloads import BatchRequest, BatchSummary
from temporal_workflows.inventory import PoolInventory
from temporal_workflows.names import (
    BATCH_MEMO,
    BATCH_WORKFLOW,
    CONTROL_TASK_QUEUE,
    SA_BATCH,
    SA_POOL,
    SA_WORKFLOW,
    worker_task_queue,
)
from temporal_workflows.payloads import GenerationOptions

# A batch item's priority when the request gives none: one below a single job's default (3), so
# that jobs submitted alone meanwhile are not queued behind a thousand items (docs/api.md).
BATCH_DEFAULT_PRIORITY = 4
# Items listed per problem in a 422 (a bad shared value is bad in every item).
_ITEMS_SHOWN = 20

Loc = list[str | int]


class BatchTooLarge(ApiError):
    status_code = 422
    error_type = "batch_too_large"


class BatchInvalid(ApiError):
    """Items that do not fit the manifest: one entry per bad field, naming the items it is bad in
    (`ctx.items`, the first few indexes, and `ctx.count`)."""

    status_code = 422
    error_type = "param_invalid"

    def __init__(self, problems: dict[tuple[tuple[str | int, ...], str], list[int]]) -> None:
        super().__init__(f"{len(problems)} problems in the batch's items")
        self.problems = problems

    def detail(self) -> Any:
        return [
            {
                "loc": list(loc),
                "msg": msg,
                "type": self.error_type,
                "ctx": {"items": items[:_ITEMS_SHOWN], "count": len(items)},
            }
            for (loc, msg), items in self.problems.items()
        ]


def new_batch_id(workflow_id: str) -> str:
    """Readable and unique: "<workflow_id>-batch-<yyyymmdd-hhmmss>-<6 hex>" (UTC)."""
    return new_task_id(f"{workflow_id}-batch")


async def start_batch(
    body: BatchCreate,
    temporal: Client,
    manifests: AsyncManifestRegistry,
    settings: Settings,
    *,
    base_url: str,
    inventory: InventoryCache | None = None,
    store: OutputStore | None = None,
    admission: PoolAdmission | None = None,
) -> str:
    """Check the batch, stage its inputs and start its BatchWorkflow; returns the batch id.

    Raises (before anything reaches Temporal) BatchTooLarge, UnknownWorkflow, UnknownWorker,
    BatchInvalid (bad params, model files no GPU of the pool has), RequestInputsInvalid, and
    PoolFull when `admission` finds no room in the pool for every item (all or none).
    The checks are POST /generate's, item by item.
    """
    size = body.size
    if size > settings.max_batch_items:
        raise BatchTooLarge(
            f"the batch has {size} items; the limit is {settings.max_batch_items}"
            " (COMFY_MAX_BATCH_ITEMS)",
            loc=["body", "items" if body.items is not None else "sweep"],
        )
    manifest = await manifests.get(body.workflow_id)
    options = body.options
    worker = options.worker if options is not None else None
    if worker:
        queue = worker_task_queue(manifest.pool, worker)
        if not await queue_pollers(temporal, queue):
            raise UnknownWorker(
                f"no GPU worker '{worker}' is polling {queue}", loc=["body", "options", "worker"]
            )
    models = await inventory.get(temporal, manifest.pool) if inventory is not None else None
    problems = await asyncio.to_thread(_item_problems, manifest, body, models, worker)
    if problems:
        raise BatchInvalid(problems)
    callback_url = await checked_callback_url(
        GenerateCreate(workflow_id=body.workflow_id, options=body.options), settings
    )
    # Admitted items count against the pool from now on: the last check before anything starts.
    await check_admission(admission, manifest.pool, jobs=size)
    batch = await _staged(manifest, body, settings, store)
    batch.options = GenerationOptions(
        worker=options.worker if options else None,
        priority=(
            options.priority if options and options.priority is not None else BATCH_DEFAULT_PRIORITY
        ),
        callback_url=callback_url,
        public_url=base_url if callback_url else None,
    )
    batch_id = new_batch_id(manifest.id)
    try:
        await temporal.start_workflow(
            BATCH_WORKFLOW,
            batch,
            id=batch_id,
            task_queue=CONTROL_TASK_QUEUE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SA_WORKFLOW, manifest.id),
                    SearchAttributePair(SA_POOL, manifest.pool),
                    SearchAttributePair(SA_BATCH, batch_id),
                ]
            ),
            memo={
                BATCH_MEMO: BatchSummary(workflow_id=manifest.id, size=size).model_dump(mode="json")
            },
            static_summary=f"batch of {size} × {manifest.id}",
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise TemporalUnavailable(f"Temporal is not reachable: {err.message}") from err
        raise
    return batch_id


def _item_problems(
    manifest: WorkflowManifest,
    body: BatchCreate,
    models: PoolInventory | None,
    worker: str | None,
) -> dict[tuple[tuple[str | int, ...], str], list[int]]:
    """Every problem of every item: (where, what) -> the items it is in. Runs in a thread: a
    thousand items take a few milliseconds of checks, which the event loop need not wait on."""
    request = BatchRequest(
        workflow_id=manifest.id,
        pool=manifest.pool,
        params=body.params,
        items=body.items,
        sweep=body.sweep,
    )
    problems: dict[tuple[tuple[str | int, ...], str], list[int]] = {}
    for index in range(request.size):
        params = request.item_params(index)
        found: list[tuple[Loc, str]] = []
        try:
            checked = validate_params(manifest, params)
            check_model_names(manifest, checked, models, worker=worker)
        except ParamsInvalid as err:
            found = [
                ([*_item_loc(body, index, e.param), *([e.field] if e.field else [])], e.reason)
                for e in err.errors
            ]
        except ModelNotFound as err:
            found = [(_item_loc(body, index, m.param), m.message) for m in err.misses]
        size = len(json.dumps(inline_images_removed(params), separators=(",", ":")))
        if size > MAX_PARAMS_BYTES:
            found.append(
                (
                    ["body", "items", index] if body.items is not None else ["body", "params"],
                    f"the item's params take {size} bytes as JSON; the limit is"
                    f" {MAX_PARAMS_BYTES} (pass large inputs such as images by file name)",
                )
            )
        for loc, msg in found:
            problems.setdefault((tuple(loc), msg), []).append(index)
    return problems


def _item_loc(body: BatchCreate, index: int, param: str) -> Loc:
    """Where in the body item `index`'s value of `param` comes from."""
    if body.items is not None:
        if param in body.items[index] or param not in body.params:
            return ["body", "items", index, param]
        return ["body", "params", param]
    sweep = body.sweep or {}
    if param in sweep:
        return ["body", "sweep", param, _sweep_position(sweep, index, param)]
    return ["body", "params", param]


def _sweep_position(sweep: dict[str, list[Any]], index: int, param: str) -> int:
    """Which of `param`'s sweep values item `index` takes (the last list varies fastest)."""
    for name, values in reversed(list(sweep.items())):
        index, position = divmod(index, len(values))
        if name == param:
            return position
    raise KeyError(param)


async def _staged(
    manifest: WorkflowManifest, body: BatchCreate, settings: Settings, store: OutputStore | None
) -> BatchRequest:
    """The batch with its image inputs checked and inline ones stored, and model URLs checked, as
    POST /generate does: shared params once, each item's and each sweep value's where they carry
    an image or a model file."""
    images = {name for name, defn in manifest.parameters.items() if defn.takes_file}
    images.update(manifest.model_folders())
    problems: list[tuple[Loc, str, str]] = []

    async def staged(
        values: dict[str, Any], where: Loc, after: tuple[int, ...] = ()
    ) -> dict[str, Any]:
        """`values` staged; a problem's loc is `where` + the parameter's name + `after`."""
        if not images.intersection(values):
            return values
        try:
            values = await stage_image_inputs(manifest, values, settings, store)
            await check_model_urls(manifest, values, settings)
            return values
        except RequestInputsInvalid as err:
            # stage_image_inputs names `body.params.<name>[.<key>]`; say where the value really
            # is, keeping the key of an object value.
            problems.extend(
                ([*where, loc[2], *after, *loc[3:]], msg, kind) for loc, msg, kind in err.problems
            )
            return values

    params = await staged(body.params, ["body", "params"])
    items = None
    if body.items is not None:
        items = [await staged(item, ["body", "items", i]) for i, item in enumerate(body.items)]
    sweep = None
    if body.sweep is not None:
        sweep = {
            name: [
                (await staged({name: value}, ["body", "sweep"], (j,)))[name]
                for j, value in enumerate(values)
            ]
            for name, values in body.sweep.items()
        }
    if problems:
        raise RequestInputsInvalid(problems)
    return BatchRequest(
        workflow_id=manifest.id, pool=manifest.pool, params=params, items=items, sweep=sweep
    )
