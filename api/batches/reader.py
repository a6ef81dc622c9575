"""How a batch reads (GET /batches/{id}) and how it is cancelled (POST /batches/{id}/cancel).

Temporal is the only state: the BatchWorkflow says whether items are still being started, and
the items themselves, found by their ComfyBatch search attribute, say how far the batch got.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import timedelta

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.batches.schemas import BatchCancelAnswer, BatchCounts, BatchPublic, BatchState
from api.errors import ApiError
from api.tasks.reader import task_status_name
from temporal_workflows.batch_payloads import BatchSummary
from temporal_workflows.names import (
    BATCH_MEMO,
    BATCH_WORKFLOW,
    GENERATION_WORKFLOW,
    SA_BATCH,
    batch_item_task_id,
)

# Batch ids are pasted into visibility queries; ours never need quotes.
_BATCH_ID = re.compile(r"^[A-Za-z0-9_.:\-]+$")
# The starting activity hears of a cancel within about a second (its heartbeat); a control worker
# that is down cannot start items either, so the cancel goes on without it after this.
_STOP_STARTING_TIMEOUT = timedelta(seconds=15)
_CANCELS_IN_FLIGHT = 16
_LISTING_PAGE = 1000

_STATES: dict[WorkflowExecutionStatus, BatchState] = {
    WorkflowExecutionStatus.RUNNING: "starting",
    WorkflowExecutionStatus.COMPLETED: "started",
    WorkflowExecutionStatus.CANCELED: "cancelled",
}


class BatchNotFound(ApiError):
    status_code = 404
    error_type = "batch_not_found"

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch with id '{batch_id}'", loc=["path", "batch_id"])


def items_query(batch_id: str) -> str:
    """The visibility query of a batch's items (its id checked by `describe_batch`)."""
    return f"WorkflowType = '{GENERATION_WORKFLOW}' AND {SA_BATCH.name} = '{batch_id}'"


async def describe_batch(client: Client, batch_id: str) -> WorkflowExecutionDescription:
    if not _BATCH_ID.match(batch_id):
        raise BatchNotFound(batch_id)
    try:
        desc = await client.get_workflow_handle(batch_id).describe()
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise BatchNotFound(batch_id) from err
        raise
    if desc.workflow_type != BATCH_WORKFLOW:
        raise BatchNotFound(batch_id)
    return desc


async def read_batch(
    client: Client, batch_id: str, base_url: str, *, offset: int = 0, limit: int = 100
) -> BatchPublic:
    desc = await describe_batch(client, batch_id)
    summary = BatchSummary.model_validate(await desc.memo_value(BATCH_MEMO))
    state = _STATES.get(desc.status, "failed") if desc.status else "failed"
    error = await _failure(client, batch_id) if state == "failed" else None
    counts = await count_items(client, batch_id)
    started = counts.PENDING + counts.SUCCESS + counts.FAILURE + counts.CANCELLED
    everything_started = state == "started" and started >= summary.size
    end = min(offset + limit, summary.size)
    return BatchPublic(
        batch_id=batch_id,
        workflow_id=summary.workflow_id,
        size=summary.size,
        state=state,
        started=started,
        counts=counts,
        finished=counts.PENDING == 0 and (everything_started or state in ("cancelled", "failed")),
        created_at=desc.start_time,
        error=error,
        task_ids=[batch_item_task_id(batch_id, i) for i in range(offset, end)],
        next_offset=end if end < summary.size else None,
        tasks_url=tasks_url(base_url, batch_id),
    )


def tasks_url(base_url: str, batch_id: str) -> str:
    return f"{base_url}/tasks?batch_id={batch_id}"


async def count_items(client: Client, batch_id: str) -> BatchCounts:
    """The batch's items by status, in one visibility count."""
    answer = await client.count_workflows(f"{items_query(batch_id)} GROUP BY ExecutionStatus")
    counts = BatchCounts()
    for group in answer.groups:
        name = str(group.group_values[0]) if group.group_values else ""
        status = task_status_name(_EXECUTION_STATUS.get(name))
        setattr(counts, status, getattr(counts, status) + group.count)
    return counts


# Visibility's ExecutionStatus values, as GROUP BY answers them.
_EXECUTION_STATUS = {
    "Running": WorkflowExecutionStatus.RUNNING,
    "Completed": WorkflowExecutionStatus.COMPLETED,
    "Failed": WorkflowExecutionStatus.FAILED,
    "Canceled": WorkflowExecutionStatus.CANCELED,
    "Terminated": WorkflowExecutionStatus.TERMINATED,
    "ContinuedAsNew": WorkflowExecutionStatus.CONTINUED_AS_NEW,
    "TimedOut": WorkflowExecutionStatus.TIMED_OUT,
}


async def _failure(client: Client, batch_id: str) -> str:
    try:
        await client.get_workflow_handle(batch_id).result()
    except WorkflowFailureError as err:
        cause = err.cause
        while cause is not None and cause.__cause__ is not None:
            cause = cause.__cause__  # the activity's own error says why
        return str(cause or err)
    return "failed"


async def cancel_batch(client: Client, batch_id: str, reason: str | None) -> BatchCancelAnswer:
    """Stop starting items, then cancel every item not finished; finished ones stay as they are.

    Items Temporal lists are cancelled when they run; an item it does not list yet (visibility
    lags a start by moments) is cancelled by id, and one that is not there never started.
    """
    desc = await describe_batch(client, batch_id)
    summary = BatchSummary.model_validate(await desc.memo_value(BATCH_MEMO))
    reason = reason or f"batch {batch_id} cancelled"
    handle = client.get_workflow_handle(batch_id)
    if desc.status == WorkflowExecutionStatus.RUNNING:
        await handle.cancel(reason=reason)
        with contextlib.suppress(WorkflowFailureError, TimeoutError):
            async with asyncio.timeout(_STOP_STARTING_TIMEOUT.total_seconds()):
                await handle.result()
    listed: dict[str, WorkflowExecutionStatus | None] = {
        execution.id: execution.status
        async for execution in client.list_workflows(items_query(batch_id), page_size=_LISTING_PAGE)
    }
    running = {WorkflowExecutionStatus.RUNNING, None}
    to_cancel = [task_id for task_id, status in listed.items() if status in running]
    unlisted = [
        task_id
        for task_id in (batch_item_task_id(batch_id, i) for i in range(summary.size))
        if task_id not in listed
    ]
    gate = asyncio.Semaphore(_CANCELS_IN_FLIGHT)

    async def cancel(task_id: str) -> bool:
        async with gate:
            try:
                await client.get_workflow_handle(task_id).cancel(reason=reason)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return False
                raise
            return True

    requested = sum(await asyncio.gather(*(cancel(t) for t in to_cancel)))
    late = sum(await asyncio.gather(*(cancel(t) for t in unlisted)))
    not_started = len(unlisted) - late
    return BatchCancelAnswer(
        batch_id=batch_id,
        cancel_requested=requested + late,
        already_finished=len(listed) - len(to_cancel),
        not_started=not_started,
        message=f"cancellation requested for {requested + late} items; they read CANCELLED once"
        " ComfyUI has stopped them",
    )
