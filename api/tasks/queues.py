"""What Temporal knows about a task queue: who polls it (for /ready and worker pins) and how many
tasks wait in it (for PENDING tasks)."""

from __future__ import annotations

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.generation.admission import task_queue_stats


async def queue_pollers(client: Client, task_queue: str, *, activities: bool = True) -> list[str]:
    """Identities polling `task_queue` for activity (or workflow) tasks (temporal-notes.md §3l)."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=(
                TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
                if activities
                else TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
            ),
        )
    )
    return sorted({p.identity for p in response.pollers})


async def queue_backlog(client: Client, task_queue: str) -> int:
    """Approximate number of activity tasks waiting in `task_queue` (temporal-notes.md §3l)."""
    return (await task_queue_stats(client, task_queue)).backlog
