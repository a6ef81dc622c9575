"""The control worker's local activities behind GenerationWorkflow's signals: `request_cancel`
(the `cancel` signal) and `update_priority` (the `set_priority` signal)."""

from __future__ import annotations

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio import activity
from temporalio.api.activity.v1 import ActivityOptions
from temporalio.api.common.v1 import Priority as ProtoPriority
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import UpdateActivityOptionsRequest
from temporalio.service import RPCError, RPCStatusCode

from temporal_workflows.names import REQUEST_CANCEL_ACTIVITY, UPDATE_PRIORITY_ACTIVITY
from temporal_workflows.payloads import CancelRequest, PriorityChange


@activity.defn(name=REQUEST_CANCEL_ACTIVITY)
async def request_cancel(request: CancelRequest) -> None:
    """Ask Temporal to cancel a generation run, with a reason; a run that already closed is fine."""
    handle = activity.client().get_workflow_handle(request.task_id, run_id=request.run_id)
    try:
        await handle.cancel(reason=request.reason)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return
        raise


@activity.defn(name=UPDATE_PRIORITY_ACTIVITY)
async def update_priority(change: PriorityChange) -> None:
    """Change the task priority of a generation's scheduled execute activity. Temporal re-queues
    a task that no worker has taken yet at the new priority; a finished activity is fine."""
    client = activity.client()
    request = UpdateActivityOptionsRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=change.task_id, run_id=change.run_id),
        id=change.activity_id,
        activity_options=ActivityOptions(priority=ProtoPriority(priority_key=change.priority)),
        update_mask=FieldMask(paths=["priority"]),
        identity=client.identity,
    )
    try:
        await client.workflow_service.update_activity_options(request)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return
        raise
