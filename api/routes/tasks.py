"""Tasks (= GenerationWorkflow executions): status, outputs, cancel, listing."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from api.contract.task_schemas import TaskPublic, TaskStatusName
from api.deps import BaseUrlDep, PageTokensDep, TemporalDep, UrlSignerDep
from api.errors import InvalidQuery
from api.page_tokens import fetch_page
from api.schemas import CancelAnswer, TaskPage
from api.tasks.reader import read_task, summarize, wait_for_end
from temporal_workflows.names import GENERATION_WORKFLOW, SA_BATCH, SA_WORKFLOW

router = APIRouter(prefix="/tasks", tags=["tasks"])

# Visibility filters per API status. PENDING and PROGRESS are both "Running" to Temporal.
_STATUS_FILTER: dict[str, str] = {
    "PENDING": "ExecutionStatus = 'Running'",
    "PROGRESS": "ExecutionStatus = 'Running'",
    "SUCCESS": "ExecutionStatus = 'Completed'",
    "FAILURE": "ExecutionStatus IN ('Failed', 'Terminated', 'TimedOut')",
    "CANCELLED": "ExecutionStatus = 'Canceled'",
}
# The longest long poll: below the usual 60-100 s idle timeouts of proxies between client and API.
MAX_WAIT_SECONDS = 60

# Values pasted into a visibility query: no quotes, so no query injection.
_QUERY_VALUE = re.compile(r"^[A-Za-z0-9_.:\-]+$")


def _query_value(value: str, name: str) -> str:
    if not _QUERY_VALUE.match(value):
        raise InvalidQuery("may contain only letters, digits and _ . : -", loc=["query", name])
    return f"'{value}'"


@router.get("", response_model=TaskPage, summary="List tasks, newest first")
async def list_tasks(
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    page_tokens: PageTokensDep,
    workflow_id: Annotated[str | None, Query(pattern=_QUERY_VALUE.pattern)] = None,
    status: TaskStatusName | None = None,
    schedule_id: Annotated[str | None, Query(pattern=_QUERY_VALUE.pattern)] = None,
    batch_id: Annotated[
        str | None,
        Query(pattern=_QUERY_VALUE.pattern, description="Only the items of this batch."),
    ] = None,
    page_token: str | None = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TaskPage:
    clauses = [f"WorkflowType = '{GENERATION_WORKFLOW}'"]
    if workflow_id:
        clauses.append(f"{SA_WORKFLOW.name} = {_query_value(workflow_id, 'workflow_id')}")
    if status:
        clauses.append(_STATUS_FILTER[status])
    if schedule_id:
        clauses.append(f"TemporalScheduledById = {_query_value(schedule_id, 'schedule_id')}")
    if batch_id:
        clauses.append(f"{SA_BATCH.name} = {_query_value(batch_id, 'batch_id')}")
    token = page_tokens.decode(page_token)
    executions = temporal.list_workflows(
        " AND ".join(clauses), page_size=page_size, next_page_token=token
    )
    await fetch_page(executions, token)
    page = list(executions.current_page or [])
    # Visibility only knows "Running"; PENDING vs PROGRESS needs each task's activity state.
    if status in ("PENDING", "PROGRESS"):
        details = await asyncio.gather(
            *(read_task(temporal, e.id, base_url) for e in page), return_exceptions=True
        )
        page = [
            e
            for e, d in zip(page, details, strict=True)
            if isinstance(d, TaskPublic) and d.status == status
        ]
    next_token = executions.next_page_token
    return TaskPage(
        tasks=[summarize(e, base_url) for e in page],
        next_page_token=page_tokens.encode(next_token),
    )


@router.get(
    "/{task_id}",
    response_model=TaskPublic,
    response_model_exclude_none=True,
    responses={404: {"description": "No task with this id."}},
    summary="Status, progress and result of a task",
)
async def get_task(
    task_id: str,
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    signer: UrlSignerDep,
    wait: Annotated[
        float | None,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description=(
                "Long poll: answer the moment the task ends (SUCCESS, FAILURE, CANCELLED), or"
                f" with its current state after this many seconds (at most {MAX_WAIT_SECONDS})."
                " Without it, the current state at once."
            ),
        ),
    ] = None,
) -> TaskPublic:
    task = await read_task(temporal, task_id, base_url, signer)
    if wait and task.status in ("PENDING", "PROGRESS"):
        task = await wait_for_end(temporal, task, wait, base_url, signer)
    return task


@router.post(
    "/{task_id}/cancel",
    response_model=CancelAnswer,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": CancelAnswer, "description": "Already finished: nothing to cancel."},
        404: {"description": "No task with this id."},
    },
    summary="Cancel a task: a queued prompt is removed, a running one interrupted",
)
async def cancel_task(
    task_id: str,
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    response: Response,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> CancelAnswer:
    task = await read_task(temporal, task_id, base_url)
    if task.status not in ("PENDING", "PROGRESS"):
        response.status_code = status.HTTP_200_OK
        return CancelAnswer(
            task_id=task_id,
            cancel_requested=False,
            status=task.status,
            message=f"task already finished with status {task.status}; nothing to cancel",
        )
    # The reason is recorded in the workflow's history (Web UI, `temporal workflow show`).
    await temporal.get_workflow_handle(task_id).cancel(reason=reason or "cancelled through the API")
    return CancelAnswer(
        task_id=task_id,
        cancel_requested=True,
        status=task.status,
        message="cancellation requested; the task reads CANCELLED once ComfyUI has stopped it",
    )
