"""Request and response schemas of /schedules: recurring generations as Temporal Schedules.

Durations are written one way everywhere: a number of seconds (`90`), a compact string of days,
hours, minutes and seconds (`"90s"`, `"5m"`, `"1h30m"`, `"1d"`), or ISO 8601 (`"PT1H"`). Answers
always use the compact form. Times are ISO 8601 with a time zone (`2026-12-01T08:00:00Z`).
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from api.contract.task_schemas import TaskStatusName
from api.schemas import MAX_WORKFLOW_ID_LENGTH, GenerateOptions

_COMPACT_DURATION = re.compile(
    r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)
_TIMEDELTA = TypeAdapter(timedelta)

# Schedule ids end up in visibility queries (GET /tasks?schedule_id=) and in task ids.
SCHEDULE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"


def parse_duration(value: Any) -> timedelta:
    """Seconds, "1h30m"-style text or ISO 8601 -> timedelta; ValueError says which forms work."""
    try:
        return _parse_duration(value)
    except OverflowError as err:  # e.g. 10**30 seconds: beyond what a timedelta holds
        raise ValueError(f"{value!r} is too long a duration (at most 999999999 days)") from err


def _parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is seconds or text like '30s', '5m', '1h30m', 'PT1H'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        match = _COMPACT_DURATION.match(text)
        if text and match:
            parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
            return timedelta(
                days=parts.get("d", 0),
                hours=parts.get("h", 0),
                minutes=parts.get("m", 0),
                seconds=parts.get("s", 0),
            )
        if text.upper().startswith("P"):
            try:
                return _TIMEDELTA.validate_python(text)
            except ValueError:
                pass
    raise ValueError(
        f"{value!r} is not a duration: use seconds (90) or text like '30s', '5m', '1h30m', "
        "'1d' or ISO 8601 'PT1H'"
    )


def format_duration(value: timedelta) -> str:
    """The compact form: "1d2h", "5m", "1h30m", "1.5s", "0s"."""
    total = value.total_seconds()
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = ""
    for amount, unit in ((days, "d"), (hours, "h"), (minutes, "m")):
        if amount:
            text += f"{int(amount)}{unit}"
    if seconds or not text:
        text += f"{seconds:g}s"
    return text


def _datetime_text(value: Any) -> Any:
    """Times are ISO 8601 text: a bare number would be read as a Unix time, silently."""
    if isinstance(value, str | datetime):
        return value
    raise ValueError("a time is ISO 8601 text with a time zone, e.g. '2026-12-01T08:00:00Z'")


# Pydantic would also take a number (Unix time) for a datetime; the API takes text only.
AwareTime = Annotated[AwareDatetime, BeforeValidator(_datetime_text)]
CronText = Annotated[str, Field(min_length=1, max_length=255)]

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [{"type": "number"}, {"type": "string"}],
            "description": "Seconds, or text like '30s', '5m', '1h30m', '1d', or ISO 8601 'PT1H'.",
            "examples": ["1h", "30s", 90],
        }
    ),
]

OverlapName = Literal[
    "skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all"
]


class ScheduleInterval(BaseModel):
    """Runs at epoch + n * every + offset, e.g. every 1h at offset 5m = hh:05 each hour (UTC)."""

    model_config = ConfigDict(extra="forbid")

    every: Duration = Field(description="Period, e.g. '1h'.")
    offset: Duration | None = Field(default=None, description="Shift within the period.")

    @field_validator("every")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 1:
            raise ValueError("must be at least 1 second")
        return value

    @field_validator("offset")
    @classmethod
    def _not_negative(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() < 0:
            raise ValueError("must not be negative")
        return value


class ScheduleSpecIn(BaseModel):
    """When runs happen: the union of the cron expressions and the intervals, between start_at
    and end_at, in time_zone, each moved by up to `jitter`."""

    model_config = ConfigDict(extra="forbid")

    cron: list[CronText] = Field(
        default_factory=list,
        description="Cron expressions, e.g. '0 3 * * *' (03:00 every day in time_zone).",
    )
    intervals: list[ScheduleInterval] = Field(default_factory=list)
    time_zone: str | None = Field(
        default=None, max_length=255, description="IANA name, e.g. 'Europe/Berlin'; default UTC."
    )
    start_at: AwareTime | None = Field(default=None, description="No run before this time.")
    end_at: AwareTime | None = Field(default=None, description="No run after this time.")
    jitter: Duration | None = Field(
        default=None, description="Each run starts up to this much later, at random."
    )

    @field_validator("cron")
    @classmethod
    def _cron_not_blank(cls, value: list[str]) -> list[str]:
        for expression in value:
            if not expression.strip():
                raise ValueError("a cron expression must not be empty")
        return [e.strip() for e in value]

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone '{value}' (use an IANA name)") from err
        return value

    @model_validator(mode="after")
    def _has_times(self) -> ScheduleSpecIn:
        if not self.cron and not self.intervals:
            raise ValueError("give at least one cron expression or interval")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


class ScheduleCalendar(BaseModel):
    """A calendar entry as Temporal stores it; each field in cron syntax ('*', '5', '1-5', '*/15').

    Temporal turns cron expressions into these; the ones cron can express are also shown in
    `cron`."""

    second: str
    minute: str
    hour: str
    day_of_month: str
    month: str
    day_of_week: str
    year: str
    comment: str | None = None


class ScheduleSpecPublic(BaseModel):
    cron: list[str] = Field(description="Calendar entries written as 5-field cron expressions.")
    calendars: list[ScheduleCalendar] = Field(
        default_factory=list,
        description="Calendar entries that no 5-field cron expression can express (e.g. seconds).",
    )
    intervals: list[ScheduleInterval]
    time_zone: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    jitter: Duration | None = None


class SchedulePolicyIn(BaseModel):
    """What happens when a run is due while another still runs, or was missed."""

    model_config = ConfigDict(extra="forbid")

    overlap: OverlapName = Field(
        default="skip",
        description="skip: drop the new run; buffer_one / buffer_all: start it (one / all) after "
        "the running one; cancel_other / terminate_other: stop the running one first; "
        "allow_all: run side by side.",
    )
    catchup_window: Duration | None = Field(
        default=None,
        description="How late a missed run (e.g. the server was down) may still start; "
        "Temporal's default is 1 year.",
    )
    pause_on_failure: bool = Field(
        default=False, strict=True, description="Pause the schedule when a run fails."
    )

    @field_validator("catchup_window")
    @classmethod
    def _catchup_positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() < 10:
            raise ValueError("must be at least 10 seconds (Temporal's minimum)")
        return value


class SchedulePolicyPublic(BaseModel):
    overlap: OverlapName
    catchup_window: Duration
    pause_on_failure: bool


class ScheduleCreate(BaseModel):
    """Body of POST /schedules: a generation (like POST /generate) plus when to run it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "schedule_id": "nightly-smoke",
                    "workflow_id": "smoke_image",
                    "params": {"width": 64, "height": 64},
                    "spec": {"cron": ["0 3 * * *"], "time_zone": "Europe/Berlin"},
                    "policy": {"overlap": "skip"},
                }
            ]
        },
    )

    schedule_id: str | None = Field(
        default=None,
        pattern=SCHEDULE_ID_PATTERN,
        description="Letters, digits, '_', '.', '-'; default: generated from the workflow id.",
    )
    workflow_id: str = Field(
        min_length=1,
        max_length=MAX_WORKFLOW_ID_LENGTH,
        description="A workflow listed by GET /workflows.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The workflow's parameters, checked now and again when each run starts.",
    )
    options: GenerateOptions | None = None
    spec: ScheduleSpecIn
    policy: SchedulePolicyIn | None = None
    paused: bool = Field(default=False, strict=True, description="Create the schedule paused.")
    note: str | None = Field(default=None, max_length=1000)


class ScheduleChange(BaseModel):
    """Body of PATCH /schedules/{id}: each field given replaces the current one."""

    model_config = ConfigDict(extra="forbid")

    spec: ScheduleSpecIn | None = None
    params: dict[str, Any] | None = Field(
        default=None, description="Replaces the whole params object; checked like POST /generate."
    )
    options: GenerateOptions | None = None
    policy: SchedulePolicyIn | None = None


class ScheduleNote(BaseModel):
    """Optional body of pause / unpause: why, shown by the API, the CLI and the Web UI."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=1000)


class ScheduleTrigger(BaseModel):
    """Optional body of POST /schedules/{id}/trigger."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(
        default=None, max_length=1000, description="Recorded as the schedule's note."
    )
    overlap: OverlapName | None = Field(
        default=None, description="Overlap policy for this run only; default the schedule's."
    )


class ScheduleRun(BaseModel):
    """One run the schedule started: an ordinary task.

    Temporal names a run "<schedule id>-<scheduled time to the second>", so runs triggered within
    the same second share a task id (the later one starts after the earlier has closed, or is
    refused); `run_id` tells them apart, and GET /tasks/{task_id} shows the latest."""

    task_id: str
    run_id: str | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    status: TaskStatusName | None = Field(
        default=None, description="None when Temporal no longer has the run (retention)."
    )
    temporal_status: str | None = None
    skipped: str | None = Field(
        default=None,
        description="Set when the run was skipped because its pool was full (admission"
        " control, --max-backlog): it ended CANCELLED with this reason, and ran nothing.",
    )
    status_url: str


class ScheduleState(BaseModel):
    paused: bool
    note: str | None = None


class SchedulePublic(BaseModel):
    """Answer of GET /schedules/{id}: everything as Temporal describes it now."""

    schedule_id: str
    workflow_id: str | None = Field(description="The manifest workflow each run generates.")
    params: dict[str, Any]
    options: GenerateOptions
    spec: ScheduleSpecPublic
    policy: SchedulePolicyPublic
    state: ScheduleState
    next_run_times: list[datetime]
    recent_runs: list[ScheduleRun] = Field(description="Newest last, as Temporal keeps them.")
    running_task_ids: list[str]
    num_runs: int = Field(description="Runs started so far, triggered ones included.")
    num_skipped_overlap: int = Field(description="Runs dropped by the overlap policy.")
    num_skipped_pool_full: int = Field(
        default=0,
        description="Runs that started but were skipped because their pool already held its"
        " maximum backlog (admission control); counted from the runs Temporal still keeps,"
        " and approximate: a run skipped a moment ago may not count yet.",
    )
    num_missed_catchup_window: int
    created_at: datetime | None = None
    updated_at: datetime | None = None
    tasks_url: str = Field(description="GET this for all runs of the schedule (GET /tasks).")


class ScheduleSummary(BaseModel):
    schedule_id: str
    workflow_id: str | None
    paused: bool
    note: str | None = None
    next_run_times: list[datetime]
    last_run_task_id: str | None = None
    url: str


class ScheduleList(BaseModel):
    """Answer of GET /schedules; pass `next_page_token` back as `page_token`."""

    schedules: list[ScheduleSummary]
    next_page_token: str | None = None


class ScheduleTriggered(BaseModel):
    """Answer of POST /schedules/{id}/trigger: the run shows in `tasks_url` once it starts."""

    schedule_id: str
    message: str
    tasks_url: str
