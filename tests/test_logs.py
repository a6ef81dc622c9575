"""Process log setup: per-request HTTP logs stay out of a worker's log unless asked for; JSON
lines carry the job a line is about."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime

import pytest

from activities.workers.logs import JsonLogFormatter, configure_logging, job_log_context


@pytest.fixture(autouse=True)
def _restore_http_loggers():
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_info_logging_hides_each_http_request() -> None:
    configure_logging("INFO")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)


def test_debug_logging_shows_http_requests() -> None:
    configure_logging("DEBUG")
    assert logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)


def json_line(record: logging.LogRecord) -> dict:
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("some.logger", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_time_level_logger_and_message() -> None:
    line = json_line(record("hello %s", "world"))
    assert line["level"] == "WARNING" and line["logger"] == "some.logger"
    assert line["message"] == "hello world"
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert "task_id" not in line


def test_a_json_line_inside_a_job_names_it() -> None:
    with job_log_context("task-1", workflow="flux", worker="gpu-0", attempt=2):
        line = json_line(record())
    job = {"task_id": "task-1", "workflow": "flux", "worker": "gpu-0", "attempt": 2}
    assert job.items() <= line.items()
    assert "task_id" not in json_line(record())  # the context ended with the block


def test_the_temporal_sdks_activity_and_workflow_details_name_the_task() -> None:
    # What activity.logger and workflow.logger attach to their records' `extra`.
    activity = {"workflow_id": "task-2", "attempt": 3, "activity_type": "notify"}
    line = json_line(record(temporal_activity=activity))
    assert (line["task_id"], line["attempt"]) == ("task-2", 3)
    line = json_line(record(temporal_workflow={"workflow_id": "task-3", "attempt": 1}))
    assert line["task_id"] == "task-3" and "attempt" not in line  # a workflow task's attempt


def test_a_traceback_stays_inside_the_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()
    line = json_line(failed)
    assert "ValueError: boom" in line["exception"] and line["message"] == "failed"
