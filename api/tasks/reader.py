"""How one GenerationWorkflow execution reads as a task: Temporal state -> TaskPublic.

Temporal is the only state. `describe()` gives the execution status and the pending
`execute_prompt` activity, whose latest heartbeat details (a `Progress`) are the live progress
(temporal-notes.md §3b), whose attempt and last failure are the infrastructure retries in place,
and the memo the retry counts of earlier execute activities; a closed execution's result or
failure gives SUCCESS / FAILURE with the final counts.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.enums.v1 import (
    BatchOperationType,
    EventType,
    HistoryEventFilterType,
    PendingActivityState,
)
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    GetWorkflowExecutionHistoryRequest,
    GetWorkflowExecutionHistoryReverseRequest,
    ListBatchOperationsRequest,
)
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

from api.contract.signed_urls import UrlSigner
from api.contract.task_schemas import (
    InfrastructureFaultPublic,
    TaskError,
    TaskModelDownload,
    TaskProgress,
    TaskPublic,
    TaskQueueInfo,
    TaskStatusName,
    WebhookPublic,
)
from api.contract.task_view import (
    finished_view,
    reason_text,
    status_url,
    success_result,
    task_error,
)
from api.errors import TaskNotFound
from api.schemas import TaskSummary
from api.tasks.queues import queue_backlog
from temporal_workflows.failures import FAILURES, ErrorType, decode_generation_error
from temporal_workflows.generation import delivery_id_for
from temporal_workflows.names import (
    EXECUTE_ACTIVITY,
    GENERATION_WORKFLOW,
    NOTIFY_ACTIVITY,
    REQUEST_MEMO,
    RETRY_COUNTS_MEMO,
    ROUTING_MEMO,
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
    InfrastructureFault,
    Progress,
    RetryCounts,
    RoutingDecision,
)

# A query needs a live control worker; when none answers quickly the task just reads as PENDING.
_STATUS_QUERY_TIMEOUT = timedelta(seconds=1)
# The cancel request is among the last events of a cancelled run: read history from the end.
_REVERSE_HISTORY_PAGE = 20
# A batch cancel of workflows: Server 1.32 says CANCEL_WORKFLOW, older servers CANCEL.
_CANCEL_BATCH = (
    BatchOperationType.BATCH_OPERATION_TYPE_CANCEL_WORKFLOW,
    BatchOperationType.BATCH_OPERATION_TYPE_CANCEL,
)

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
    routing = await read_routing(desc)
    if routing is not None:
        task.worker, task.routing, task.routing_reason = (
            routing.worker,
            routing.routing,
            routing.reason,
        )
    if desc.status in (None, WorkflowExecutionStatus.RUNNING):
        # A generation that has ended reads as ended while only its webhook is being delivered.
        notifying = (
            task.webhook is not None
            and _pending_activity(desc, NOTIFY_ACTIVITY) is not None
            and await _fill_notifying(handle, task, base_url, signer)
        )
        if not notifying:
            await _fill_running(client, handle, desc, task)
        elif task.status == "CANCELLED" and task.cancel_reason is None:
            # The workflow knows only the reason its cancel event carries; a batch's is elsewhere.
            task.cancel_reason = await read_cancel_reason(client, task_id, desc.run_id)
            task.result, task.error = finished_view(
                "CANCELLED", None, None, task.cancel_reason, base_url, signer
            )
    elif desc.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        task.status = "SUCCESS"
        task.result = success_result(result, base_url, signer)
        task.attempts, task.infrastructure_retries = result.attempts, result.infrastructure_retries
        task.worker = result.worker
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
        reason, error, generation_error = await _closed_failure(handle, desc.status)
        task.result = reason
        task.error = error
        if generation_error is not None:
            _set_final_counts(task, None, generation_error)
    return task


def _set_final_counts(
    task: TaskPublic, result: GenerationResult | None, error: GenerationError | None
) -> None:
    """The two retry counts of an ended generation, as its result or final error carries them
    (a failure before the GPU step, or from a workflow older than the counts, has none)."""
    if result is not None:
        task.attempts, task.infrastructure_retries = result.attempts, result.infrastructure_retries
    elif error is not None and error.infrastructure_retries is not None:
        task.attempts, task.infrastructure_retries = error.attempt, error.infrastructure_retries


async def wait_for_end(
    client: Client,
    task: TaskPublic,
    seconds: float,
    base_url: str,
    signer: UrlSigner | None = None,
) -> TaskPublic:
    """`task`, read as PENDING or PROGRESS, once it has ended, or as it is after `seconds`.

    A long poll on the run's close event (the server answers the moment it is written, and
    after its own long-poll interval with nothing, then we ask again), so a waiting client costs
    no RPC while the task runs. A success is read from that event's result; anything else is
    read again in full.
    """
    closed = await _close_event(client, task.task_id, seconds)
    if (
        closed is not None
        and closed.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
        and task.webhook is None  # its final state is in the memo: read it in full
    ):
        payloads = closed.workflow_execution_completed_event_attributes.result.payloads
        try:
            (result,) = await client.data_converter.decode(payloads, [GenerationResult])
        except Exception:
            result = None  # a result of another version: the full read shows what it can
        if isinstance(result, GenerationResult):
            ended = task.model_copy(
                update={
                    "status": "SUCCESS",
                    "temporal_status": WorkflowExecutionStatus.COMPLETED.name,
                    "closed_at": closed.event_time.ToDatetime(tzinfo=UTC),
                    "progress": None,
                    "queue": None,
                    "result": success_result(result, base_url, signer),
                    "worker": result.worker,
                }
            )
            if result.routing is not None:
                ended.routing = result.routing.routing
                ended.routing_reason = result.routing.reason
            _set_final_counts(ended, result, None)
            return ended
    return await read_task(client, task.task_id, base_url, signer)


async def _close_event(client: Client, task_id: str, seconds: float) -> HistoryEvent | None:
    """The close event of the task's current run once it is written, or None after `seconds`."""
    request = GetWorkflowExecutionHistoryRequest(
        namespace=client.namespace,
        execution=ExecutionRef(workflow_id=task_id),
        wait_new_event=True,
        history_event_filter_type=HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
        skip_archival=True,
    )
    # builtins: temporalio's TimeoutError (a workflow's) is imported above.
    with contextlib.suppress(builtins.TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                page = await client.workflow_service.get_workflow_execution_history(
                    request, retry=True, timeout=timedelta(seconds=seconds + 5)
                )
                if page.history.events:
                    return page.history.events[-1]
                if not page.next_page_token:
                    return None
                request.next_page_token = page.next_page_token
    return None


async def read_cancel_reason(client: Client, task_id: str, run_id: str | None) -> str | None:
    """The reason given with the cancel request of a run (POST /tasks/{id}/cancel?reason=, the
    `cancel` signal, `temporal workflow cancel --query ... --reason`), or None when none was given.

    Read from the run's WorkflowExecutionCancelRequested event (its `cause`), not from the
    workflow's status query: history answers with no control worker running. Temporal records
    one cancel request per run (a repeated request is a no-op), so the first one found from the
    end is the one. A batch cancel leaves `cause` empty: its reason is on the batch job.
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
                    if cause.strip():
                        return cause.strip()
                    return await _batch_cancel_reason(client, task_id, event.event_time)
            if not page.next_page_token:
                return None
            request.next_page_token = page.next_page_token
    except RPCError:  # the reason is a nicety; the task still reads CANCELLED without it
        return None


async def _batch_cancel_reason(client: Client, task_id: str, requested: Timestamp) -> str | None:
    """The reason of the batch cancel that requested this cancel at `requested`, if one did.

    The batch's own requests carry neither the reason nor the job id (Server 1.32: `cause` is
    empty and `identity` is the server's), so the link is the time: the cancel request falls
    inside the job's run. A job given an explicit list of executions must name this one; two
    cancel jobs running at once with different reasons give no reason rather than a guess.
    """
    at = requested.ToNanoseconds()
    reasons: set[str] = set()
    listing = ListBatchOperationsRequest(namespace=client.namespace, page_size=100)
    while True:
        page = await client.workflow_service.list_batch_operations(listing)
        for job in page.operation_info:
            # A server that lists jobs without their type (UNSPECIFIED) is asked per job.
            unspecified = BatchOperationType.BATCH_OPERATION_TYPE_UNSPECIFIED
            if job.operation_type not in (*_CANCEL_BATCH, unspecified):
                continue
            ended = job.close_time.ToNanoseconds() if job.HasField("close_time") else None
            if job.start_time.ToNanoseconds() > at or (ended and ended < at):
                continue
            batch = await client.workflow_service.describe_batch_operation(
                DescribeBatchOperationRequest(namespace=client.namespace, job_id=job.job_id)
            )
            if batch.operation_type not in _CANCEL_BATCH:
                continue
            if batch.executions and all(e.business_id != task_id for e in batch.executions):
                continue
            if batch.reason.strip():
                reasons.add(batch.reason.strip())
        if not page.next_page_token:
            break
        listing.next_page_token = page.next_page_token
    return reasons.pop() if len(reasons) == 1 else None


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
    if desc.raw_description.workflow_extended_info.cancel_requested:
        # Being cancelled, and the GPU step is over: never scheduled, or cancelled (the workflow
        # waits until ComfyUI dropped the prompt). The run closes as Canceled next; the status
        # query would already answer "done", which must not read as a job that ran.
        ran = await _gpu_step_started(client, desc)
        task.status = "PROGRESS" if ran else "PENDING"
        return
    if pending:
        # Outputs are stored and a later step (e.g. a webhook) runs: the generation itself is done.
        task.status = "PROGRESS"
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
        task.status = "PROGRESS"
        p = status.progress
        task.progress = _public_progress(p) if p else TaskProgress(percent=100.0)
        return
    task.status = "PENDING"
    task.queue = TaskQueueInfo(phase="preparing")
    if status is not None and status.phase == "running":
        # The GPU step is scheduled, or backs off between two of its execute activities.
        task.attempts = status.attempt
        task.infrastructure_retries = status.infrastructure_retries
        task.last_infrastructure_fault = _public_fault(status.last_infrastructure_fault)
        if status.attempt > 1 or status.infrastructure_retries:
            task.queue = TaskQueueInfo(phase="retrying", attempt=status.attempt)


async def _gpu_step_started(client: Client, desc: WorkflowExecutionDescription) -> bool:
    """Whether a GPU worker had taken the cancelled execute activity of this run, as its
    ActivityTaskCanceled event says (`started_event_id` 0: it was still waiting for a GPU)."""
    request = GetWorkflowExecutionHistoryReverseRequest(
        namespace=client.namespace,
        execution=ExecutionRef(workflow_id=desc.id, run_id=desc.run_id),
        maximum_page_size=_REVERSE_HISTORY_PAGE,
    )
    cancelled: dict[int, int] = {}  # scheduled event id -> started event id
    try:
        while True:
            page = await client.workflow_service.get_workflow_execution_history_reverse(request)
            for event in page.history.events:
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
                    attrs = event.activity_task_canceled_event_attributes
                    cancelled[attrs.scheduled_event_id] = attrs.started_event_id
                elif (
                    event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                    and event.event_id in cancelled
                    and event.activity_task_scheduled_event_attributes.activity_type.name
                    == EXECUTE_ACTIVITY
                ):
                    return cancelled[event.event_id] != 0
            if not page.next_page_token:
                return False
            request.next_page_token = page.next_page_token
    except RPCError:  # unknown: PENDING claims less than PROGRESS
        return False


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
    await _fill_retry_counts(client, desc, pa, task)
    started = pa.state in (
        PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED,
    )
    if started and progress is not None and progress.phase == "downloading_model":
        # The GPU worker fetches a model file the request gave by URL: ComfyUI has nothing yet.
        task.status = "PENDING"
        download = progress.download
        task.queue = TaskQueueInfo(
            phase="downloading_model",
            download=TaskModelDownload(
                param=download.param,
                url=download.url,
                bytes_done=download.bytes_done,
                bytes_total=download.bytes_total,
            )
            if download is not None
            else None,
            waiting_seconds=_seconds_since(pa.scheduled_time.ToDatetime(tzinfo=UTC)),
            attempt=pa.attempt,
            last_failure=last_failure,
        )
    elif started and (progress is None or progress.phase == "queued"):
        # A GPU worker holds the job, but ComfyUI does not run it yet: it is being submitted
        # (no heartbeat yet), or it waits in that ComfyUI's queue behind the running prompt
        # (prefetched). PROGRESS only once ComfyUI runs it, so the status never goes back.
        task.status = "PENDING"
        task.queue = TaskQueueInfo(
            phase="submitting_to_comfyui" if progress is None else "queued_in_comfyui",
            position=progress.queue_position if progress is not None else None,
            waiting_seconds=_seconds_since(pa.scheduled_time.ToDatetime(tzinfo=UTC)),
            attempt=pa.attempt,
            last_failure=last_failure,
        )
    elif started and progress is not None:
        task.status = "PROGRESS"
        task.progress = _public_progress(progress)
    else:
        task.status = "PENDING"
        scheduled = (
            pa.scheduled_time.ToDatetime(tzinfo=UTC) if pa.HasField("scheduled_time") else None
        )
        queue = _gpu_queue(desc)
        if task.routing is not None:
            routed = await read_routing(desc)
            queue = routed.task_queue if routed is not None else queue
        task.queue = TaskQueueInfo(
            phase="waiting_for_gpu_worker",
            waiting_seconds=_seconds_since(scheduled) if scheduled else None,
            attempt=pa.attempt,
            last_failure=last_failure,
            task_queue=queue,
            backlog=await _backlog(client, queue),
        )


async def _fill_retry_counts(
    client: Client, desc: WorkflowExecutionDescription, pa: PendingActivityInfo, task: TaskPublic
) -> None:
    """`attempts`, `infrastructure_retries` and the last infrastructure fault of a job whose
    execute activity is pending: the memo counts the earlier activities, and this one's attempts
    beyond the first were infrastructure faults retried in place (the last one is its
    `last_failure`)."""
    try:
        memo = await desc.memo_value(RETRY_COUNTS_MEMO, default=None)
        counts = RetryCounts.model_validate(memo) if isinstance(memo, dict) else RetryCounts()
    except Exception:  # a memo from another version: count from this activity alone
        counts = RetryCounts()
    task.attempts = counts.attempts
    task.infrastructure_retries = counts.infrastructure_retries + max(pa.attempt - 1, 0)
    fault = counts.last_infrastructure_fault
    if pa.attempt > 1 and pa.HasField("last_failure"):
        try:
            error = decode_generation_error(
                await client.data_converter.decode_failure(pa.last_failure)
            )
        except Exception:
            error = None
        at = (
            pa.last_attempt_complete_time.ToDatetime(tzinfo=UTC)
            if pa.HasField("last_attempt_complete_time")
            else None
        )
        fault = InfrastructureFault(
            type=error.type if error else "Error",
            message=error.message if error else pa.last_failure.message,
            at=at,
        )
    task.last_infrastructure_fault = _public_fault(fault)


def _public_fault(fault: InfrastructureFault | None) -> InfrastructureFaultPublic | None:
    if fault is None:
        return None
    return InfrastructureFaultPublic(type=fault.type, message=fault.message, at=fault.at)


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
) -> tuple[str, TaskError | None, GenerationError | None]:
    """A readable reason and, where the workflow gave one, the public error and the
    GenerationError it was read from."""
    try:
        await handle.result()
    except WorkflowFailureError as err:
        reason, error = _explain_failure(err.cause, status)
        generation_error = decode_generation_error(err.cause) if error is not None else None
        return reason, error, generation_error
    except Exception as err:  # e.g. a cancel surfaces as WorkflowFailureError(CancelledError)
        return f"{status.name.lower()}: {err}", None, None
    return status.name.lower(), None, None


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
        return reason_text(error), task_error(error)
    text = str(cause) if cause is not None else "failed"
    return text, TaskError(type=type(cause).__name__ if cause else "Error", message=text)


# ---------------------------------------------------------------------------------------------
# Webhooks: the delivery state, and a generation that ended while its webhook is delivered


async def read_routing(desc: WorkflowExecutionDescription) -> RoutingDecision | None:
    """Where the workflow sent its GPU step, and why, as its memo records it (None before the
    step was routed, and for runs older than routing)."""
    try:
        routing = await desc.memo_value(ROUTING_MEMO, default=None)
        return RoutingDecision.model_validate(routing) if isinstance(routing, dict) else None
    except Exception:  # a memo from another version: show what we can
        return None


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
    _set_final_counts(task, status.result, status.error)
    return True
