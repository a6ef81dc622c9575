"""Names shared by the API, the workflow and the workers: task queues and search attributes."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

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
