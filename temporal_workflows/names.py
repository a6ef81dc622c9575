"""Every Temporal name the API, the workflow and the workers share: the workflow and activity
types, query and signal names, memo keys, search attributes and task-queue naming."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

GENERATION_WORKFLOW = "GenerationWorkflow"
# One per GPU pool, id `inventory-<pool>`, on the control queue: which models each worker has.
POOL_INVENTORY_WORKFLOW = "PoolInventoryWorkflow"

# Activity types: prepare, request_cancel and update_priority run as local activities of the
# control worker, notify on the control queue, execute on a GPU queue.
PREPARE_ACTIVITY = "prepare_generation"
EXECUTE_ACTIVITY = "execute_prompt"
REQUEST_CANCEL_ACTIVITY = "request_cancel"
UPDATE_PRIORITY_ACTIVITY = "update_priority"
NOTIFY_ACTIVITY = "notify"
# Fixed id of the execute activity, so `set_priority` (and operators) can address it.
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
REQUEST_MEMO = "request"
WEBHOOK_MEMO = "webhook"
IDEMPOTENCY_MEMO = "idempotency"
SCHEDULE_MEMO = "schedule_id"

CONTROL_TASK_QUEUE = "comfy-control"

# Registered by `comfy-temporal dev` and `comfy-temporal setup`; used for Web UI filters.
SA_WORKFLOW = SearchAttributeKey.for_keyword("ComfyWorkflow")
SA_POOL = SearchAttributeKey.for_keyword("ComfyPool")
SA_WORKER = SearchAttributeKey.for_keyword("ComfyWorker")
SEARCH_ATTRIBUTES = (SA_WORKFLOW, SA_POOL, SA_WORKER)


def pool_task_queue(pool: str) -> str:
    """The queue every GPU worker of a pool polls: load balancing across GPUs."""
    return f"comfy-gpu-{pool}"


def worker_task_queue(pool: str, worker: str) -> str:
    """A GPU worker's own queue: work pinned to that worker."""
    return f"comfy-gpu-{pool}.{worker}"


def inventory_workflow_id(pool: str) -> str:
    """The id of the pool's PoolInventoryWorkflow: one per pool, found without a lookup."""
    return f"inventory-{pool}"
