"""Log setup shared by every `comfy-temporal` process: text for a terminal, or one JSON object per
line for a log pipeline, each line naming the job it is about (task id, workflow, worker, attempt).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from temporalio.runtime import LoggingConfig

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")


@dataclass(frozen=True)
class JobLogContext:
    """What a log line says about the job it is about; None where not known."""

    task_id: str | None = None
    workflow: str | None = None
    worker: str | None = None
    attempt: int | None = None


# Set by each activity for the duration of its run. asyncio copies it into the tasks the activity
# creates (the ComfyUI socket reader, the heartbeat ticker), so their lines name the job too.
_job: ContextVar[JobLogContext | None] = ContextVar("comfy_job_log_context", default=None)


@contextlib.contextmanager
def job_log_context(
    task_id: str,
    *,
    workflow: str | None = None,
    worker: str | None = None,
    attempt: int | None = None,
) -> Iterator[JobLogContext]:
    """Every line logged inside the block (and in tasks it starts) names this job."""
    context = JobLogContext(task_id, workflow, worker, attempt)
    token = _job.set(context)
    try:
        yield context
    finally:
        _job.reset(token)


def job_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The job a record is about: from `job_log_context`, else from the details the Temporal SDK
    attaches to its activity and workflow loggers' records (`temporal_activity`,
    `temporal_workflow` in `extra`; a GenerationWorkflow's id is its task id)."""
    context = JobLogContext()
    sdk_activity = getattr(record, "temporal_activity", None)
    sdk_workflow = getattr(record, "temporal_workflow", None)
    if isinstance(sdk_activity, dict):
        context = replace(
            context, task_id=sdk_activity.get("workflow_id"), attempt=sdk_activity.get("attempt")
        )
    elif isinstance(sdk_workflow, dict):
        context = replace(context, task_id=sdk_workflow.get("workflow_id"))
    ours = _job.get()
    if ours is not None:
        context = replace(context, **{k: v for k, v in asdict(ours).items() if v is not None})
    return {k: v for k, v in asdict(context).items() if v is not None}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601), level, logger, message, the
    job's fields where known, and a traceback as `exception` (escaped, so still one line)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(job_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """The process's root handler on stderr, in `log_format`; call before anything logs."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLogFormatter())
        _forward_temporal_core_logs()
        logging.captureWarnings(True)  # else Python prints them to stderr as text
    else:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])
    # httpx logs every request at INFO: each ComfyUI health check, submit and download would
    # otherwise fill the log of a busy worker. At DEBUG they are wanted.
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(quiet)


def temporal_core_logging() -> LoggingConfig:
    """Logging of the Temporal SDK's core (Rust) for a Runtime this process creates: forwarded to
    the `temporalio.core` logger, so its lines take this process's format; the SDK's default
    levels (core WARN, the rest ERROR)."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig

    return LoggingConfig(
        filter=LoggingConfig.default.filter,
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )


def _forward_temporal_core_logs() -> None:
    # The core writes its own text lines to stderr by default, which a JSON log must not mix in.
    from temporalio.runtime import Runtime, TelemetryConfig

    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=temporal_core_logging())),
        error_if_already_set=False,
    )
