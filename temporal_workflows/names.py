"""Every Temporal name the API, the workflow and the workers share: the workflow and activity
types, query and signal names, memo keys, search attributes and task-queue naming."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

GENERATION_WORKFLOW = "GenerationWorkflow"
# One per GPU pool, id `inventory-<pool>`, on the control queue: which models each worker has.
POOL_INVENTORY_WORKFLOW = "PoolInventoryWorkflow"
# Starts the items of a batch (POST /batches) as ordinary GenerationWorkflows; id = the batch id.
BATCH_WORKFLOW = "BatchWorkflow"

# Activity types: prepare, check_admission, request_cancel and update_priority run as local
# activities of the control worker, notify on the control queue, execute on a GPU queue.
PREPARE_ACTIVITY = "prepare_generation"
ADMISSION_ACTIVITY = "check_admission"
EXECUTE_ACTIVITY = "execute_prompt"
REQUEST_CANCEL_ACTIVITY = "request_cancel"
UPDATE_PRIORITY_ACTIVITY = "update_priority"
NOTIFY_ACTIVITY = "notify"
# BatchWorkflow's one activity, on the control queue.
START_BATCH_ITEMS_ACTIVITY = "start_batch_items"
# Local activity of the control worker: which GPU queue a job goes to (model-affinity routing).
ROUTE_ACTIVITY = "route_generation"
# Id of the (first) execute activity, so `set_priority` (and operators) can address it; a retry
# the workflow schedules itself is `execute-2`, `execute-3`, ... (`execute_activity_id`).
EXECUTE_ACTIVITY_ID = "execute"

STATUS_QUERY = "status"
CANCEL_SIGNAL = "cancel"
SET_PRIORITY_SIGNAL = "set_priority"
# PoolInventoryWorkflow: GPU workers signal (report with signal-with-start); the API queries.
REPORT_INVENTORY_SIGNAL = "report_inventory"
WITHDRAW_INVENTORY_SIGNAL = "withdraw_inventory"
INVENTORY_QUERY = "inventory"

# Memo keys. REQUEST_MEMO: the GenerationRequest as JSON, written at start (POST /generate and
# schedules). WEBHOOK_MEMO: the webhook's final delivery state (a WebhookDelivery), written by the
# workflow. IDEMPOTENCY_MEMO: the request body's hash under an Idempotency-Key. SCHEDULE_MEMO: the
# id of the schedule that started the run.
# RETRY_COUNTS_MEMO: a RetryCounts, written when the workflow schedules its second execute
# activity and each one after.
# ADMISSION_MEMO: why a schedule's run was skipped (an AdmissionOutcome: its pool was full).
# BATCH_MEMO: on a batch item, its batch id and index; on a BatchWorkflow, what GET /batches/{id}
# shows without reading its input (a BatchSummary).
REQUEST_MEMO = "request"
ADMISSION_MEMO = "admission"
WEBHOOK_MEMO = "webhook"
IDEMPOTENCY_MEMO = "idempotency"
SCHEDULE_MEMO = "schedule_id"
RETRY_COUNTS_MEMO = "retry_counts"
BATCH_MEMO = "batch"

# GenerationWorkflow's patch id of the admission check of a schedule's runs: histories of runs
# recorded before it replay without the check.
ADMISSION_PATCH = "schedule-admission"
# ROUTING_MEMO: the RoutingDecision of the execute activity now scheduled (or the last one).
ROUTING_MEMO = "routing"

CONTROL_TASK_QUEUE = "comfy-control"

# Registered by `comfy-temporal dev` and `comfy-temporal setup`; used for Web UI filters.
SA_WORKFLOW = SearchAttributeKey.for_keyword("ComfyWorkflow")
SA_POOL = SearchAttributeKey.for_keyword("ComfyPool")
SA_WORKER = SearchAttributeKey.for_keyword("ComfyWorker")
# The batch id, on a batch's items and on its BatchWorkflow: GET /tasks?batch_id= filters on it.
SA_BATCH = SearchAttributeKey.for_keyword("ComfyBatch")
SEARCH_ATTRIBUTES = (SA_WORKFLOW, SA_POOL, SA_WORKER, SA_BATCH)


def execute_activity_id(try_number: int) -> str:
    """The activity id of a generation's `try_number`th execute activity."""
    return EXECUTE_ACTIVITY_ID if try_number == 1 else f"{EXECUTE_ACTIVITY_ID}-{try_number}"


def pool_task_queue(pool: str) -> str:
    """The queue every GPU worker of a pool polls: load balancing across GPUs."""
    return f"comfy-gpu-{pool}"


def worker_task_queue(pool: str, worker: str) -> str:
    """A GPU worker's own queue: work pinned to that worker, and work routed to it for the
    models it has (it takes the latter only when its GPU has room)."""
    return f"comfy-gpu-{pool}.{worker}"


def inventory_workflow_id(pool: str) -> str:
    """The id of the pool's PoolInventoryWorkflow: one per pool, found without a lookup."""
    return f"inventory-{pool}"


def batch_item_task_id(batch_id: str, index: int) -> str:
    """The task id of item `index` (from 0) of batch `batch_id`: readable, and known in advance,
    so a retried start finds the item it already started."""
    return f"{batch_id}-{index}"
