"""Recurring generations as Temporal Schedules: our request models <-> temporalio.client schedules.

Temporal is the only truth: every answer is read back with `describe()`, so a pause or trigger
done with `temporal schedule toggle/trigger` or in the Web UI shows up here. Each run is an
ordinary GenerationWorkflow started by the schedule with the stored GenerationRequest; its
`prepare` step renders the manifest as it is at run time, so a "random" seed is drawn afresh per
run and params that an edited manifest no longer accepts fail that run only (temporal-notes.md §3e).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    WorkflowExecutionStatus,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from api.contract.task_view import status_url
from api.errors import ApiError, TemporalUnavailable
from api.generations.start import generation_start
from api.schedules.schemas import (
    OverlapName,
    ScheduleCalendar,
    ScheduleInterval,
    SchedulePolicyIn,
    SchedulePolicyPublic,
    SchedulePublic,
    ScheduleRun,
    ScheduleSpecIn,
    ScheduleSpecPublic,
)
from api.schedules.schemas import ScheduleState as ScheduleStatePublic
from api.schemas import GenerateOptions
from api.tasks.reader import task_status_name
from manifests.definitions import WorkflowManifest
from temporal_workflows.names import (
    ADMISSION_MEMO,
    GENERATION_WORKFLOW,
    SA_WORKFLOW,
    SCHEDULE_MEMO,
)
from temporal_workflows.payloads import AdmissionOutcome, GenerationRequest

OVERLAP_POLICIES: dict[OverlapName, ScheduleOverlapPolicy] = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "buffer_all": ScheduleOverlapPolicy.BUFFER_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "terminate_other": ScheduleOverlapPolicy.TERMINATE_OTHER,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}
# Skipped runs are counted over at most this many cancelled runs of a schedule (newest first).
MAX_CANCELLED_RUNS_SCANNED = 1000
# Temporal's own default: a run missed while the server was down may start up to a year late.
_DEFAULT_CATCHUP_WINDOW = timedelta(days=365)
_OVERLAP_NAMES = {policy: name for name, policy in OVERLAP_POLICIES.items()}


class ScheduleNotFound(ApiError):
    status_code = 404
    error_type = "schedule_not_found"

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule with id '{schedule_id}'", loc=["path", "schedule_id"])


class ScheduleExists(ApiError):
    status_code = 409
    error_type = "schedule_exists"

    def __init__(self, schedule_id: str) -> None:
        super().__init__(
            f"a schedule with id '{schedule_id}' already exists", loc=["body", "schedule_id"]
        )


class InvalidScheduleSpec(ApiError):
    """Temporal refused the spec, e.g. a cron expression it cannot parse."""

    status_code = 422
    error_type = "invalid_schedule_spec"


def new_schedule_id(workflow_id: str) -> str:
    """Readable and unique: "<workflow_id>-schedule-<6 hex>"."""
    return f"{workflow_id}-schedule-{secrets.token_hex(3)}"


def schedule_url(base_url: str, schedule_id: str) -> str:
    return f"{base_url}/schedules/{quote(schedule_id, safe='')}"


def tasks_url(base_url: str, schedule_id: str) -> str:
    return f"{base_url}/tasks?schedule_id={quote(schedule_id, safe='')}"


# ---------------------------------------------------------------------------------------------
# Our models -> Temporal


def generation_action(
    schedule_id: str,
    manifest: WorkflowManifest,
    params: dict[str, object],
    options: GenerateOptions | None,
) -> ScheduleActionStartWorkflow:
    """Start GenerationWorkflow as POST /generate does, noting the schedule in the memo and the
    summary. Temporal names each run "<schedule_id>-<scheduled time, ISO, Z>", its task id."""
    start = generation_start(
        manifest,
        params,
        options,
        memo={SCHEDULE_MEMO: schedule_id},
        summary_note=f"schedule {schedule_id}",
    )
    return start.schedule_action(schedule_id)


def temporal_spec(spec: ScheduleSpecIn) -> ScheduleSpec:
    return ScheduleSpec(
        cron_expressions=list(spec.cron),
        intervals=[ScheduleIntervalSpec(every=i.every, offset=i.offset) for i in spec.intervals],
        time_zone_name=spec.time_zone,
        start_at=spec.start_at,
        end_at=spec.end_at,
        jitter=spec.jitter,
    )


def temporal_policy(policy: SchedulePolicyIn | None) -> SchedulePolicy:
    policy = policy or SchedulePolicyIn()
    return SchedulePolicy(
        overlap=OVERLAP_POLICIES[policy.overlap],
        catchup_window=policy.catchup_window or _DEFAULT_CATCHUP_WINDOW,
        pause_on_failure=policy.pause_on_failure,
    )


def schedule_search_attributes(workflow_id: str) -> TypedSearchAttributes:
    """On the schedule itself, so `temporal schedule list --query "ComfyWorkflow = 'x'"` and our
    listing can tell which workflow a schedule runs without describing it."""
    return TypedSearchAttributes([SearchAttributePair(SA_WORKFLOW, workflow_id)])


def new_schedule(
    action: ScheduleActionStartWorkflow,
    spec: ScheduleSpecIn,
    policy: SchedulePolicyIn | None,
    *,
    paused: bool,
    note: str | None,
) -> Schedule:
    return Schedule(
        action=action,
        spec=temporal_spec(spec),
        policy=temporal_policy(policy),
        state=ScheduleState(note=note, paused=paused),
    )


def translate_rpc_error(err: RPCError, schedule_id: str) -> Exception:
    """Temporal's answers that are the caller's fault, as API errors; others unchanged."""
    if err.status == RPCStatusCode.NOT_FOUND:
        return ScheduleNotFound(schedule_id)
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return TemporalUnavailable(f"Temporal is not reachable: {err.message}")
    if err.status == RPCStatusCode.INVALID_ARGUMENT and "spec" in err.message.lower():
        return InvalidScheduleSpec(err.message, loc=["body", "spec"])
    return err


# ---------------------------------------------------------------------------------------------
# Temporal -> our models

# Bounds of each calendar field, to write a full range as "*".
_FIELD_BOUNDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day_of_month": (1, 31),
    "month": (1, 12),
    "day_of_week": (0, 6),
}


def ranges_text(ranges: Sequence[ScheduleRange], bounds: tuple[int, int] | None) -> str:
    """Cron syntax for one calendar field: "*", "*/15", "5", "1-5", "0-30/10", "1,15"."""
    if not ranges:
        return "*" if bounds is None else ""  # no year ranges = every year
    parts: list[str] = []
    for r in ranges:
        end = max(r.end, r.start)
        step = r.step or 1
        if bounds is not None and (r.start, end) == bounds:
            parts.append("*" if step == 1 else f"*/{step}")
        elif r.start == end:
            parts.append(str(r.start))
        else:
            parts.append(f"{r.start}-{end}" + (f"/{step}" if step != 1 else ""))
    return ",".join(parts)


def public_calendar(calendar: ScheduleCalendarSpec) -> ScheduleCalendar:
    fields = {
        name: ranges_text(getattr(calendar, name), bounds) for name, bounds in _FIELD_BOUNDS.items()
    }
    return ScheduleCalendar(
        **fields, year=ranges_text(calendar.year, None), comment=calendar.comment
    )


def calendar_as_cron(calendar: ScheduleCalendar) -> str | None:
    """The 5-field cron expression for a calendar at second 0 in every year, else None."""
    if calendar.second != "0" or calendar.year != "*":
        return None
    fields = (
        calendar.minute,
        calendar.hour,
        calendar.day_of_month,
        calendar.month,
        calendar.day_of_week,
    )
    if not all(fields):
        return None
    return " ".join(fields)


def public_spec(spec: ScheduleSpec) -> ScheduleSpecPublic:
    cron: list[str] = list(spec.cron_expressions)
    calendars: list[ScheduleCalendar] = []
    for calendar in spec.calendars:
        shown = public_calendar(calendar)
        expression = calendar_as_cron(shown)
        if expression is not None and not calendar.comment:
            cron.append(expression)
        else:
            calendars.append(shown)
    return ScheduleSpecPublic(
        cron=cron,
        calendars=calendars,
        intervals=[ScheduleInterval(every=i.every, offset=i.offset) for i in spec.intervals],
        time_zone=spec.time_zone_name or None,
        start_at=spec.start_at,
        end_at=spec.end_at,
        jitter=spec.jitter or None,
    )


def public_policy(policy: SchedulePolicy) -> SchedulePolicyPublic:
    return SchedulePolicyPublic(
        overlap=_OVERLAP_NAMES.get(policy.overlap, "skip"),
        catchup_window=policy.catchup_window or _DEFAULT_CATCHUP_WINDOW,
        pause_on_failure=policy.pause_on_failure,
    )


def is_generation_schedule(description: ScheduleDescription) -> bool:
    action = description.schedule.action
    return (
        isinstance(action, ScheduleActionStartWorkflow) and action.workflow == GENERATION_WORKFLOW
    )


async def stored_request(client: Client, description: ScheduleDescription) -> GenerationRequest:
    """The GenerationRequest every run of the schedule starts with (the action's argument)."""
    action = description.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    if not action.args:
        return GenerationRequest(workflow_id="")
    (request,) = await client.data_converter.decode(action.args[:1], [GenerationRequest])
    return request  # type: ignore[no-any-return]


async def describe_generation_schedule(client: Client, schedule_id: str) -> ScheduleDescription:
    """Describe the schedule, or raise ScheduleNotFound (also for schedules of other workflows)."""
    try:
        description = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as err:
        raise translate_rpc_error(err, schedule_id) from err
    if not is_generation_schedule(description):
        raise ScheduleNotFound(schedule_id)
    return description


def _skip_reason(memo: Mapping[str, Any]) -> str | None:
    """Why admission skipped a run (its pool was full, GenerationWorkflow._admit), or None."""
    raw = memo.get(ADMISSION_MEMO)
    if not isinstance(raw, dict):
        return None
    return AdmissionOutcome.model_validate(raw).skip_reason()


async def _run_status(
    client: Client, task_id: str, run_id: str | None
) -> tuple[WorkflowExecutionStatus | None, str | None]:
    """The run's status and, when admission skipped it, why."""
    try:
        desc = await client.get_workflow_handle(task_id, run_id=run_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None, None
        raise
    skipped = None
    if desc.status == WorkflowExecutionStatus.CANCELED:
        skipped = _skip_reason(await desc.memo())
    return desc.status, skipped


async def skipped_runs(client: Client, schedule_id: str) -> int:
    """Runs of the schedule that admission skipped because their pool was full, among its
    newest MAX_CANCELLED_RUNS_SCANNED cancelled runs that Temporal still keeps (visibility,
    eventually consistent: a run skipped a moment ago may not count yet)."""
    query = (
        f"TemporalScheduledById = '{schedule_id}' AND ExecutionStatus = 'Canceled'"
        f" AND WorkflowType = '{GENERATION_WORKFLOW}'"
    )
    count = 0
    async for execution in client.list_workflows(query, limit=MAX_CANCELLED_RUNS_SCANNED):
        if _skip_reason(await execution.memo()) is not None:
            count += 1
    return count


async def read_schedule(
    client: Client, description: ScheduleDescription, base_url: str
) -> SchedulePublic:
    request = await stored_request(client, description)
    info = description.info
    runs = [
        (result, result.action)
        for result in info.recent_actions
        if isinstance(result.action, ScheduleActionExecutionStartWorkflow)
    ]
    statuses, skipped = await asyncio.gather(
        asyncio.gather(
            *(_run_status(client, a.workflow_id, a.first_execution_run_id) for _, a in runs)
        ),
        skipped_runs(client, description.id),
    )
    recent = [
        ScheduleRun(
            task_id=action.workflow_id,
            run_id=action.first_execution_run_id or None,
            scheduled_at=result.scheduled_at,
            started_at=result.started_at,
            status=task_status_name(status) if status is not None else None,
            temporal_status=status.name if status is not None else None,
            skipped=skip_reason,
            status_url=status_url(base_url, action.workflow_id),
        )
        for (result, action), (status, skip_reason) in zip(runs, statuses, strict=True)
    ]
    state = description.schedule.state
    return SchedulePublic(
        schedule_id=description.id,
        workflow_id=request.workflow_id or None,
        params=request.params,
        options=GenerateOptions(worker=request.options.worker, priority=request.options.priority),
        spec=public_spec(description.schedule.spec),
        policy=public_policy(description.schedule.policy),
        state=ScheduleStatePublic(paused=state.paused, note=state.note or None),
        next_run_times=list(info.next_action_times),
        recent_runs=recent,
        running_task_ids=[
            a.workflow_id
            for a in info.running_actions
            if isinstance(a, ScheduleActionExecutionStartWorkflow)
        ],
        num_runs=info.num_actions,
        num_skipped_overlap=info.num_actions_skipped_overlap,
        num_skipped_pool_full=skipped,
        num_missed_catchup_window=info.num_actions_missed_catchup_window,
        created_at=info.created_at,
        updated_at=info.last_updated_at,
        tasks_url=tasks_url(base_url, description.id),
    )
