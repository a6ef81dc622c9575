"""The `start_batch_items` activity: start every item of a batch as an ordinary GenerationWorkflow
(task id `<batch id>-<index>`), a few at a time, resuming where a previous attempt stopped.

It heartbeats the index below which every item is started; a retry (the control worker died)
resumes from there, and starts are idempotent by task id, so an item is never started twice.
A cancel (POST /batches/{id}/cancel) reaches it at its next heartbeat, and it starts no more.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.generation.starts import build_generation_start
from temporal_workflows.batch_payloads import BatchItemsStarted, StartBatchItemsInput
from temporal_workflows.names import BATCH_MEMO, START_BATCH_ITEMS_ACTIVITY, batch_item_task_id

log = logging.getLogger(__name__)

# Starts in flight at once. Enough to start 1,000 items in seconds, few enough that a POST
# /generate made meanwhile still finds the Temporal frontend answering promptly (bench/batches.py).
STARTS_IN_FLIGHT = 8
# The type of the failure that ends a batch whose items Temporal refuses to start (e.g. the
# ComfyBatch search attribute is not registered: run `comfy-temporal setup`); retrying cannot help.
BATCH_ITEM_REFUSED = "BatchItemRefused"


@activity.defn(name=START_BATCH_ITEMS_ACTIVITY)
async def start_batch_items(job: StartBatchItemsInput) -> BatchItemsStarted:
    batch = job.batch
    total = batch.size
    details = activity.info().heartbeat_details
    resume = int(details[0]) if details else 0
    client = activity.client()
    started = existing = 0

    async def start_item(index: int) -> bool:
        """Start item `index`; False when an earlier attempt already did."""
        start = build_generation_start(
            batch.workflow_id,
            batch.pool,
            batch.item_params(index),
            batch.options,
            memo={BATCH_MEMO: {"batch_id": job.batch_id, "index": index}},
            summary_note=f"#{index} of {job.batch_id}",
            batch_id=job.batch_id,
        )
        try:
            await start.start(
                client,
                batch_item_task_id(job.batch_id, index),
                idempotent=True,
                task_queue=job.task_queue,
            )
        except WorkflowAlreadyStartedError:
            return False  # started by an earlier attempt, and already finished
        except RPCError as err:
            if err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.FAILED_PRECONDITION):
                raise ApplicationError(
                    f"Temporal refused to start item {index}: {err.message}",
                    type=BATCH_ITEM_REFUSED,
                    non_retryable=True,
                ) from err
            raise
        return True

    for first in range(resume, total, STARTS_IN_FLIGHT):
        # A running item with the same id is returned as is (USE_EXISTING), so a resumed attempt
        # cannot tell new from old there; only closed ones show up as already started.
        done = await asyncio.gather(
            *(start_item(i) for i in range(first, min(first + STARTS_IN_FLIGHT, total)))
        )
        started += sum(done)
        existing += len(done) - sum(done)
        activity.heartbeat(min(first + STARTS_IN_FLIGHT, total))
    if resume:
        log.info("batch %s: resumed at item %d of %d", job.batch_id, resume, total)
    return BatchItemsStarted(total=total, started=started, already_started=resume + existing)
