"""How one GenerationWorkflow execution reads as a task: Temporal state -> TaskPublic.

Temporal is the only state. `describe()` gives the execution status and the pending
`execute_prompt` activity, whose latest heartbeat details (a `Progress`) are the live progress
(temporal-notes.md §3b); a closed execution's result or failure gives SUCCESS / FAILURE.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import CancelledError, FailureError, TerminatedError, TimeoutError
from temporalio.service import RPCError, RPCStatusCode

from api.access import UrlSigner
from api.errors import TaskNotFound
from api.schemas import (
    OutputPublic,
    TaskError,
    TaskProgress,
    TaskPublic,
    TaskQueueInfo,
    TaskResult,
    TaskStatusName,
    TaskSummary,
    WebhookPublic,
)
from api.tasks.queues import queue_backlog
from temporal_workflows.failures import FAILURES, ErrorType, decode_generation_error
from temporal_workflows.generation import delivery_id_for
from temporal_workflows.names import (
    EXECUTE_ACTIVITY,
    GENERATION_WORKFLOW,
    NOTIFY_ACTIVITY,
    REQUEST_MEMO,
    SA_POOL,
    SA_WORKER,
    SA_WORKFLOW,
    STATUS_QUERY,
    WEBHOOK_MEMO,
    pool_task_queue,
    worker_task_queue,
)
from temporal_workflows.payloads import (
    GenerationError,
    GenerationResult,
    GenerationStatus,
    Progress,
)

# A query needs a live control worker; when none answers quickly the task just reads as PENDING.
_STATUS_QUERY_TIMEOUT = timedelta(seconds=1)
# The cancel request is among the last events of a cancelled run: read history from the end.
_REVERSE_HISTORY_PAGE = 20

_CLOSED_STATUS: dict[WorkflowExecutionStatus, TaskStatusName] = {
    WorkflowExecutionStatus.COMPLETED: "SUCCESS",
    WorkflowExecutionStatus.FAILED: "FAILURE",
    WorkflowExecutionStatus.TERMINATED: "FAILURE",
    WorkflowExecutionStatus.TIMED_OUT: "FAILURE",
    WorkflowExecutionStatus.CANCELED: "CANCELLED",
}


def task_status_name(status: WorkflowExecutionStatus | None) -> TaskStatusName:
    """The coarse status of an execution without looking at its activities (for listings)."""
    if status is None or status in (
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.CONTINUED_AS_NEW,
    ):
        return "PENDING"
    return _CLOSED_STATUS.get(status, "FAILURE")


def output_url(
    base_url: str,
    task_id: str,
    filename: str,
    signer: UrlSigner | None = None,
    *,
    signed_at: float | None = None,
) -> str:
    """The file's download URL; with a signer it carries `?expires=&sig=` (works without a key),
    valid for the signer's TTL from `signed_at` (unix seconds; default now)."""
    url = f"{base_url}/tasks/{quote(task_id, safe='')}/outputs/{quote(filename, safe='')}"
    if signer is not None:
        url += "?" + signer.sign(task_id, filename, now=signed_at).query()
    return url


def status_url(base_url: str, task_id: str) -> str:
    return f"{base_url}/tasks/{quote(task_id, safe='')}"


async def describe_task(client: Client, task_id: str) -> WorkflowExecutionDescription:
    """Describe the execution, or raise TaskNotFound (also for executions of other types)."""
    try:
        desc = await client.get_workflow_handle(task_id).describe()
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise TaskNotFound(task_id) from err
        raise
    if desc.workflow_type != GENERATION_WORKFLOW:
        raise TaskNotFound(task_id)
    return desc


async def read_task(
    client: Client, task_id: str, base_url: str, signer: UrlSigner | None = None
) -> TaskPublic:
    desc = await describe_task(client, task_id)
    task = TaskPublic(
        task_id=task_id,
        workflow_id=desc.typed_search_attributes.get(SA_WORKFLOW),
        status="PENDING",
        temporal_status=desc.status.name if desc.status else "UNKNOWN",
        created_at=desc.start_time,
        closed_at=desc.close_time,
    )
    handle = client.get_workflow_handle(task_id, result_type=GenerationResult)
    task.webhook = await read_webhook(desc)
    if desc.status in (None, WorkflowExecutionStatus.RUNNING):
        # A generation that has ended reads as ended while only its webhook is being delivered.
        notifying = (
            task.webhook is not None
            and _pending_activity(desc, NOTIFY_ACTIVITY) is not None
            and await _fill_notifying(handle, task, base_url, signer)
        )
        if not notifying:
            await _fill_running(client, handle, desc, task)
    elif desc.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        task.status = "SUCCESS"
        task.result = _success_result(result, base_url, signer)
    elif desc.status == WorkflowExecutionStatus.CONTINUED_AS_NEW:
        task.status = "PENDING"  # the new run carries on; describe follows it next time
    elif desc.status == WorkflowExecutionStatus.CANCELED:
        task.status = "CANCELLED"
        task.cancel_reason = await read_cancel_reason(client, task_id, desc.run_id)
        task.result, task.error = finished_view(
            "CANCELLED", None, None, task.cancel_reason, base_url, signer
        )
    else:
        task.status = _CLOSED_STATUS.get(desc.status, "FAILURE")
        reason, error = await _closed_failure(handle, desc.status)
        task.result = reason
        task.error = error
    return task


async def read_cancel_reason(client: Client, task_id: str, run_id: str | None) -> str | None:
    """The reason given with the cancel request of a run (POST /tasks/{id}/cancel?reason=, the
    `cancel` signal, `temporal workflow cancel --reason`), or None when none was given.

    Read from the run's WorkflowExecutionCancelRequested event (its `cause`), not from the
    workflow's status query: history answers with no control worker running. Temporal records
    one cancel request per run (a repeated request is a no-op), so the first one found from the
    end is the one.
    """
    request = GetWorkflowExecutionHistoryReverseRequest(
        namespace=client.namespace,
        execution=ExecutionRef(workflow_id=task_id, run_id=run_id or ""),
        maximum_page_size=_REVERSE_HISTORY_PAGE,
    )
    try:
        while True:
            page = await client.workflow_service.get_workflow_execution_history_reverse(request)
            for event in page.history.events:
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
                    cause = event.workflow_execution_cancel_requested_event_attributes.cause
                    return cause.strip() or None
            if not page.next_page_token:
                return None
            request.next_page_token = page.next_page_token
    except RPCError:  # the reason is a nicety; the task still reads CANCELLED without it
        return None


def summarize(execution: WorkflowExecution, base_url: str) -> TaskSummary:
    return TaskSummary(
        task_id=execution.id,
        workflow_id=execution.typed_search_attributes.get(SA_WORKFLOW),
        status=task_status_name(execution.status),
        temporal_status=execution.status.name if execution.status else "UNKNOWN",
        created_at=execution.start_time,
        closed_at=execution.close_time,
        status_url=status_url(base_url, execution.id),
    )


def _success_result(
    result: GenerationResult,
    base_url: str,
    signer: UrlSigner | None = None,
    signed_at: float | None = None,
) -> TaskResult:
    outputs = [
        OutputPublic(
            filename=o.filename,
            url=output_url(base_url, result.task_id, o.filename, signer, signed_at=signed_at),
            content_type=o.content_type,
            size=o.size,
            node_id=o.node_id,
        )
        for o in result.outputs
    ]
    return TaskResult(
        download_url=outputs[0].url if outputs else None,
        outputs=outputs,
        params=result.params,
        timings=result.timings,
        worker=result.worker,
        attempts=result.attempts,
        revision=result.revision,
    )


async def _fill_running(
    client: Client,
    handle: WorkflowHandle[object, GenerationResult],
    desc: WorkflowExecutionDescription,
    task: TaskPublic,
) -> None:
    pending = list(desc.raw_description.pending_activities)
    execute = next((pa for pa in pending if pa.activity_type.name == EXECUTE_ACTIVITY), None)
    if execute is not None:
        await _fill_from_execute(client, desc, execute, task)
        return
    if pending:
        # Outputs are stored and a later step (e.g. a webhook) runs: the generation itself is done.
        task.status = "STARTED"
        task.progress = TaskProgress(percent=100.0)
        return
    # Between activities (rendering, or just after the GPU work): ask the workflow itself.
    try:
        status: GenerationStatus = await handle.query(
            STATUS_QUERY, result_type=GenerationStatus, rpc_timeout=_STATUS_QUERY_TIMEOUT
        )
    except Exception:
        status = None  # type: ignore[assignment]
    # "running" with no execute activity on the server yet means the workflow is scheduling it
    # right now (a query sees the worker's state before that state is persisted): still PENDING.
    if status is not None and status.phase in ("storing", "notifying", "done"):
        task.status = "STARTED"
        p = status.progress
        task.progress = _public_progress(p) if p else TaskProgress(percent=100.0)
        return
    task.status = "PENDING"
    task.queue = TaskQueueInfo(phase="preparing")


def _gpu_queue(desc: WorkflowExecutionDescription) -> str | None:
    """The GPU queue the workflow sends its job to: a pinned worker's own, else the pool's."""
    pool = desc.typed_search_attributes.get(SA_POOL)
    if pool is None:
        return None
    worker = desc.typed_search_attributes.get(SA_WORKER)
    return worker_task_queue(pool, worker) if worker else pool_task_queue(pool)


async def _backlog(client: Client, queue: str | None) -> int | None:
    if queue is None:
        return None
    try:
        return await queue_backlog(client, queue)
    except RPCError:  # stats are a nicety; the status answer must not fail for them
        return None


async def _fill_from_execute(
    client: Client, desc: WorkflowExecutionDescription, pa: PendingActivityInfo, task: TaskPublic
) -> None:
    progress: Progress | None = None
    if pa.HasField("heartbeat_details") and pa.heartbeat_details.payloads:
        try:
            (progress,) = await client.data_converter.decode(
                pa.heartbeat_details.payloads, [Progress]
            )
        except Exception:
            progress = None  # details from another version of the worker: show what we can
    last_failure = pa.last_failure.message if pa.HasField("last_failure") else None
    started = pa.state in (
        PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED,
    )
    if started and (progress is None or progress.phase == "queued"):
        # A GPU worker holds the job, but ComfyUI does not run it yet: it is being submitted
        # (no heartbeat yet), or it waits in that ComfyUI's queue behind the running prompt
        # (prefetched). STARTED only once ComfyUI runs it, so the status never goes back.
        task.status = "PENDING"
        task.queue = TaskQueueInfo(
            phase="submitting_to_comfyui" if progress is None else "queued_in_comfyui",
            position=progress.queue_position if progress is not None else None,
            waiting_seconds=_seconds_since(pa.scheduled_time.ToDatetime(tzinfo=UTC)),
            attempt=pa.attempt,
            last_failure=last_failure,
        )
    elif started and progress is not None:
        task.status = "STARTED"
        task.progress = _public_progress(progress)
    else:
        task.status = "PENDING"
        scheduled = (
            pa.scheduled_time.ToDatetime(tzinfo=UTC) if pa.HasField("scheduled_time") else None
        )
        queue = _gpu_queue(desc)
        task.queue = TaskQueueInfo(
            phase="waiting_for_gpu_worker",
            waiting_seconds=_seconds_since(scheduled) if scheduled else None,
            attempt=pa.attempt,
            last_failure=last_failure,
            task_queue=queue,
            backlog=await _backlog(client, queue),
        )


def _public_progress(progress: Progress) -> TaskProgress:
    return TaskProgress(
        percent=round(progress.percent, 1),
        node=progress.node,
        class_type=progress.class_type,
        step=progress.step,
        max=progress.max,
        worker=progress.worker,
        updated_at=progress.updated_at,
    )


def _seconds_since(moment: datetime | None) -> float | None:
    if moment is None or moment.year < 1971:  # unset protobuf timestamp
        return None
    return round((datetime.now(UTC) - moment).total_seconds(), 3)


async def _closed_failure(
    handle: WorkflowHandle[object, GenerationResult], status: WorkflowExecutionStatus
) -> tuple[str, TaskError | None]:
    """A readable reason and, where the workflow gave one, the structured GenerationError."""
    try:
        await handle.result()
    except WorkflowFailureError as err:
        return _explain_failure(err.cause, status)
    except Exception as err:  # e.g. a cancel surfaces as WorkflowFailureError(CancelledError)
        return f"{status.name.lower()}: {err}", None
    return status.name.lower(), None


def _explain_failure(
    cause: BaseException | None, status: WorkflowExecutionStatus
) -> tuple[str, TaskError | None]:
    if isinstance(cause, CancelledError) or status == WorkflowExecutionStatus.CANCELED:
        message = cause.message if isinstance(cause, FailureError) and cause.message else ""
        reason = "cancelled" + (
            f": {message}" if message and message != "Workflow cancelled" else ""
        )
        return reason, None
    if isinstance(cause, TerminatedError) or status == WorkflowExecutionStatus.TERMINATED:
        message = cause.message if isinstance(cause, FailureError) else ""
        return f"terminated: {message or 'no reason given'}", TaskError(
            type=ErrorType.TERMINATED, message=message or FAILURES[ErrorType.TERMINATED].text
        )
    if isinstance(cause, TimeoutError) or status == WorkflowExecutionStatus.TIMED_OUT:
        return "timed out before the generation finished", TaskError(
            type=ErrorType.TIMED_OUT, message=FAILURES[ErrorType.TIMED_OUT].text
        )
    error = decode_generation_error(cause)
    if error is not None:
        return _reason_text(error), _task_error(error)
    text = str(cause) if cause is not None else "failed"
    return text, TaskError(type=type(cause).__name__ if cause else "Error", message=text)


def _reason_text(error: GenerationError) -> str:
    """E.g. "ComfyUIExecutionError: CUDA out of memory (node 3, KSampler)"."""
    named = error.message
    where = ", ".join(
        part
        for part in (
            f"node {error.node_id}"
            if error.node_id and f"node {error.node_id}" not in named
            else None,
            error.class_type if error.class_type and error.class_type not in named else None,
            f"parameter '{error.param}'" if error.param and error.param not in named else None,
        )
        if part
    )
    return f"{error.type}: {error.message}" + (f" ({where})" if where else "")


# ---------------------------------------------------------------------------------------------
# Webhooks: the delivery state, and a generation that ended while its webhook is delivered


async def read_webhook(desc: WorkflowExecutionDescription) -> WebhookPublic | None:
    """The webhook's delivery: final once the workflow recorded it in its memo, otherwise pending
    with the attempts and last error of the `notify` activity as Temporal reports them."""
    try:
        final = await desc.memo_value(WEBHOOK_MEMO, default=None)
        request = await desc.memo_value(REQUEST_MEMO, default=None)
    except Exception:  # a memo from another version: show what we can
        return None
    if isinstance(final, dict):
        try:
            return WebhookPublic.model_validate(final)
        except ValueError:
            return None
    options = request.get("options") if isinstance(request, dict) else None
    url = options.get("callback_url") if isinstance(options, dict) else None
    if not isinstance(url, str) or not url:
        return None
    webhook = WebhookPublic(
        url=url,
        delivery_id=delivery_id_for(desc.id, desc.run_id),
        status="pending",
        attempts=0,
    )
    notify = _pending_activity(desc, NOTIFY_ACTIVITY)
    if notify is not None:
        # `attempt` is the attempt running now, or the next one while Temporal backs off.
        waiting = notify.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        webhook.attempts = notify.attempt - 1 if waiting else notify.attempt
        if notify.HasField("last_failure"):
            webhook.last_error = notify.last_failure.message
    return webhook


def _pending_activity(
    desc: WorkflowExecutionDescription, activity_type: str
) -> PendingActivityInfo | None:
    return next(
        (
            pa
            for pa in desc.raw_description.pending_activities
            if pa.activity_type.name == activity_type
        ),
        None,
    )


def _task_error(error: GenerationError) -> TaskError:
    return TaskError(
        type=error.type,
        message=error.message,
        node_id=error.node_id,
        class_type=error.class_type,
        param=error.param,
    )


def finished_view(
    outcome: TaskStatusName,
    result: GenerationResult | None,
    error: GenerationError | None,
    cancel_reason: str | None,
    base_url: str,
    signer: UrlSigner | None = None,
    *,
    signed_at: float | None = None,
) -> tuple[TaskResult | str | None, TaskError | None]:
    """`result` and `error` of an ended generation, as GET /tasks/{id} and webhooks show them;
    download URLs are signed at `signed_at` (unix seconds; default now) when a signer is given."""
    if outcome == "SUCCESS" and result is not None:
        return _success_result(result, base_url, signer, signed_at), None
    if outcome == "CANCELLED":
        return "cancelled" + (f": {cancel_reason}" if cancel_reason else ""), None
    if error is not None:
        return _reason_text(error), _task_error(error)
    return "failed", None


async def _fill_notifying(
    handle: WorkflowHandle[object, GenerationResult],
    task: TaskPublic,
    base_url: str,
    signer: UrlSigner | None,
) -> bool:
    """Fill an ended generation whose webhook is being delivered; False when it is not one."""
    try:
        status: GenerationStatus = await handle.query(
            STATUS_QUERY, result_type=GenerationStatus, rpc_timeout=_STATUS_QUERY_TIMEOUT
        )
    except Exception:
        return False
    if status.phase != "notifying" or status.outcome is None:
        return False
    task.status = status.outcome
    if status.outcome == "CANCELLED":
        task.cancel_reason = status.cancel_reason
    task.result, task.error = finished_view(
        status.outcome, status.result, status.error, status.cancel_reason, base_url, signer
    )
    return True
