"""BatchWorkflow: start the items of a batch (POST /batches) as ordinary GenerationWorkflows.

The items are independent workflows, not children: each is a task like any other (its own
retries, outputs, cancel, webhook), and the batch's history stays a dozen events whatever its
size, because one heartbeating activity starts them all (`start_batch_items`). The workflow ends
once every item is started; the batch's progress is read from the items (search attribute
ComfyBatch). Cancelling it stops the starting; POST /batches/{id}/cancel then cancels the items.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from temporal_workflows.batch_payloads import (
        BatchItemsStarted,
        BatchRequest,
        StartBatchItemsInput,
    )
    from temporal_workflows.names import BATCH_WORKFLOW, START_BATCH_ITEMS_ACTIVITY

# Starting one item takes milliseconds; a heartbeat follows every few. Missing them this long
# means the control worker died, and another attempt resumes where this one stopped.
START_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
# Per attempt; 1,000 items start in seconds (bench/batches.py), this leaves room for a loaded
# Temporal. Attempts go on until every item is started or the batch is cancelled.
START_ATTEMPT_TIMEOUT = timedelta(minutes=30)


@workflow.defn(name=BATCH_WORKFLOW)
class BatchWorkflow:
    """One batch: its id is the batch id; its items are tasks `<batch id>-<index>`."""

    @workflow.run
    async def run(self, batch: BatchRequest) -> BatchItemsStarted:
        info = workflow.info()
        workflow.set_current_details(f"**starting** {batch.size} items of `{batch.workflow_id}`")
        started: BatchItemsStarted = await workflow.execute_activity(
            START_BATCH_ITEMS_ACTIVITY,
            StartBatchItemsInput(
                batch_id=info.workflow_id, batch=batch, task_queue=info.task_queue
            ),
            result_type=BatchItemsStarted,
            task_queue=info.task_queue,
            start_to_close_timeout=START_ATTEMPT_TIMEOUT,
            heartbeat_timeout=START_HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
            ),
            # The batch reads as cancelled only once no further item can start.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"start {batch.size} items",
        )
        workflow.set_current_details(f"**started** {started.total} items of `{batch.workflow_id}`")
        return started
