"""Schedules: recurring generations (Temporal Schedules that start GenerationWorkflow)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response, status
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError

from api.deps import BaseUrlDep, ManifestsDep, PageTokensDep, TemporalDep
from api.generations.start import check_params_size
from api.inventory import check_model_names_now
from api.page_tokens import fetch_page
from api.schedules.schemas import (
    ScheduleChange,
    ScheduleCreate,
    ScheduleList,
    ScheduleNote,
    SchedulePublic,
    ScheduleSummary,
    ScheduleTrigger,
    ScheduleTriggered,
)
from api.schedules.translate import (
    OVERLAP_POLICIES,
    ScheduleExists,
    describe_generation_schedule,
    generation_action,
    new_schedule,
    new_schedule_id,
    read_schedule,
    schedule_search_attributes,
    schedule_url,
    stored_request,
    tasks_url,
    temporal_policy,
    temporal_spec,
    translate_rpc_error,
)
from api.schemas import GenerateOptions
from temporal_workflows.names import GENERATION_WORKFLOW, SA_WORKFLOW

router = APIRouter(prefix="/schedules", tags=["schedules"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No schedule with this id."}}


async def _changed(
    temporal: Client,
    base_url: str,
    schedule_id: str,
    change: Callable[[ScheduleHandle], Awaitable[None]],
) -> SchedulePublic:
    """Apply `change` to the schedule, then read it back as it is now."""
    handle = temporal.get_schedule_handle(schedule_id)
    try:
        await change(handle)
        description = await handle.describe()
    except RPCError as err:
        raise translate_rpc_error(err, schedule_id) from err
    return await read_schedule(temporal, description, base_url)


async def _pause_or_unpause(
    temporal: Client, base_url: str, schedule_id: str, body: ScheduleNote | None, *, pause: bool
) -> SchedulePublic:
    await describe_generation_schedule(temporal, schedule_id)
    note = (body.note if body else None) or f"{'paused' if pause else 'unpaused'} through the API"

    async def change(handle: ScheduleHandle) -> None:
        await (handle.pause(note=note) if pause else handle.unpause(note=note))

    return await _changed(temporal, base_url, schedule_id, change)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SchedulePublic,
    responses={
        409: {"description": "A schedule with this id already exists."},
        422: {
            "description": "Unknown workflow, bad parameters or a bad spec; one entry per field."
        },
    },
    summary="Create a schedule of recurring generations",
)
async def create_schedule(
    body: ScheduleCreate,
    request: Request,
    response: Response,
    temporal: TemporalDep,
    manifests: ManifestsDep,
    base_url: BaseUrlDep,
) -> SchedulePublic:
    # The same checks as POST /generate (raise ParamsTooLarge, UnknownWorkflow, ParamsInvalid,
    # ModelNotFound); each run checks again against the manifest of its own time. A schedule
    # keeps its params whole (inline images too), in its action and in each run's input and memo.
    check_params_size(body.params)
    manifest, checked = await manifests.checked(body.workflow_id, body.params)
    await check_model_names_now(
        request, manifest, checked, worker=body.options.worker if body.options else None
    )
    schedule_id = body.schedule_id or new_schedule_id(body.workflow_id)
    schedule = new_schedule(
        generation_action(schedule_id, manifest, body.params, body.options),
        body.spec,
        body.policy,
        paused=body.paused,
        note=body.note,
    )
    try:
        created = await temporal.create_schedule(
            schedule_id,
            schedule,
            search_attributes=schedule_search_attributes(body.workflow_id),
        )
    except ScheduleAlreadyRunningError as err:
        raise ScheduleExists(schedule_id) from err
    except RPCError as err:
        raise translate_rpc_error(err, schedule_id) from err
    response.headers["Location"] = schedule_url(base_url, schedule_id)
    description = await created.describe()
    return await read_schedule(temporal, description, base_url)


@router.get("", response_model=ScheduleList, summary="List schedules of generations")
async def list_schedules(
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    page_tokens: PageTokensDep,
    # Pasted into a visibility query: no quotes allowed, so no query injection.
    workflow_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.:\-]+$")] = None,
    page_token: str | None = None,
    page_size: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ScheduleList:
    query = f"{SA_WORKFLOW.name} = '{workflow_id}'" if workflow_id else None
    token = page_tokens.decode(page_token)
    schedules = await temporal.list_schedules(query, page_size=page_size, next_page_token=token)
    try:
        await fetch_page(schedules, token)
    except RPCError as err:
        raise translate_rpc_error(err, "") from err
    summaries = []
    for listed in schedules.current_page or []:
        if listed.schedule is None or getattr(listed.schedule.action, "workflow", None) != (
            GENERATION_WORKFLOW
        ):
            continue  # schedules of other workflow types are not generations
        state = listed.schedule.state
        recent = listed.info.recent_actions if listed.info else []
        last = recent[-1].action if recent else None
        summaries.append(
            ScheduleSummary(
                schedule_id=listed.id,
                workflow_id=listed.typed_search_attributes.get(SA_WORKFLOW),
                paused=state.paused,
                note=state.note or None,
                next_run_times=list(listed.info.next_action_times) if listed.info else [],
                last_run_task_id=getattr(last, "workflow_id", None),
                url=schedule_url(base_url, listed.id),
            )
        )
    next_token = schedules.next_page_token
    return ScheduleList(
        schedules=summaries,
        next_page_token=page_tokens.encode(next_token),
    )


@router.get(
    "/{schedule_id}",
    response_model=SchedulePublic,
    responses=_NOT_FOUND,
    summary="Spec, policy, state, next run times and recent runs of a schedule",
)
async def get_schedule(
    schedule_id: str, temporal: TemporalDep, base_url: BaseUrlDep
) -> SchedulePublic:
    description = await describe_generation_schedule(temporal, schedule_id)
    return await read_schedule(temporal, description, base_url)


@router.patch(
    "/{schedule_id}",
    response_model=SchedulePublic,
    responses={**_NOT_FOUND, 422: {"description": "Bad parameters or spec."}},
    summary="Change the spec, params, options or policy of a schedule",
)
async def change_schedule(
    schedule_id: str,
    body: ScheduleChange,
    http_request: Request,
    temporal: TemporalDep,
    manifests: ManifestsDep,
    base_url: BaseUrlDep,
) -> SchedulePublic:
    current = await describe_generation_schedule(temporal, schedule_id)
    request = await stored_request(temporal, current)
    action: ScheduleActionStartWorkflow | None = None
    if body.params is not None or body.options is not None:
        params = body.params if body.params is not None else request.params
        check_params_size(params)
        manifest, checked = await manifests.checked(request.workflow_id, params)
        options = body.options
        if options is None:
            options = GenerateOptions(
                worker=request.options.worker, priority=request.options.priority
            )
        await check_model_names_now(http_request, manifest, checked, worker=options.worker)
        action = generation_action(schedule_id, manifest, params, options)

    def updated(update: ScheduleUpdateInput) -> ScheduleUpdate:
        # Start from the schedule as it is at update time (Temporal retries on a conflict), so a
        # pause done meanwhile is kept.
        schedule = update.description.schedule
        if action is not None:
            schedule.action = action
        if body.spec is not None:
            schedule.spec = temporal_spec(body.spec)
        if body.policy is not None:
            schedule.policy = temporal_policy(body.policy)
        return ScheduleUpdate(schedule=schedule)

    return await _changed(temporal, base_url, schedule_id, lambda handle: handle.update(updated))


@router.post(
    "/{schedule_id}/pause",
    response_model=SchedulePublic,
    responses=_NOT_FOUND,
    summary="Pause a schedule: no run starts until it is unpaused (trigger still works)",
)
async def pause_schedule(
    schedule_id: str,
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    body: Annotated[ScheduleNote | None, Body()] = None,
) -> SchedulePublic:
    return await _pause_or_unpause(temporal, base_url, schedule_id, body, pause=True)


@router.post(
    "/{schedule_id}/unpause",
    response_model=SchedulePublic,
    responses=_NOT_FOUND,
    summary="Unpause a schedule",
)
async def unpause_schedule(
    schedule_id: str,
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    body: Annotated[ScheduleNote | None, Body()] = None,
) -> SchedulePublic:
    return await _pause_or_unpause(temporal, base_url, schedule_id, body, pause=False)


@router.post(
    "/{schedule_id}/trigger",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ScheduleTriggered,
    responses=_NOT_FOUND,
    summary="Start one run now, under the overlap policy (also while paused)",
)
async def trigger_schedule(
    schedule_id: str,
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    body: Annotated[ScheduleTrigger | None, Body()] = None,
) -> ScheduleTriggered:
    await describe_generation_schedule(temporal, schedule_id)
    handle = temporal.get_schedule_handle(schedule_id)
    overlap = OVERLAP_POLICIES[body.overlap] if body and body.overlap else None
    note = body.note if body else None
    try:
        await handle.trigger(overlap=overlap)
        if note:

            def noted(update: ScheduleUpdateInput) -> ScheduleUpdate:
                schedule = update.description.schedule
                state = schedule.state
                schedule.state = ScheduleState(
                    note=note,
                    paused=state.paused,
                    limited_actions=state.limited_actions,
                    remaining_actions=state.remaining_actions,
                )
                return ScheduleUpdate(schedule=schedule)

            await handle.update(noted)
    except RPCError as err:
        raise translate_rpc_error(err, schedule_id) from err
    return ScheduleTriggered(
        schedule_id=schedule_id,
        message="run requested; see tasks_url once it starts (unless the overlap policy skips it)",
        tasks_url=tasks_url(base_url, schedule_id),
    )


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_NOT_FOUND,
    summary="Delete a schedule; runs already started go on",
)
async def delete_schedule(schedule_id: str, temporal: TemporalDep) -> Response:
    await describe_generation_schedule(temporal, schedule_id)
    try:
        await temporal.get_schedule_handle(schedule_id).delete()
    except RPCError as err:
        raise translate_rpc_error(err, schedule_id) from err
    return Response(status_code=status.HTTP_204_NO_CONTENT)
