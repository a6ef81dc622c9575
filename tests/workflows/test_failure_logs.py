"""What a failed job leaves in the service log: one line with the task id, the failure type and
the reason; the traceback only at DEBUG. Runs on the real GPU and control workers (in this
process, so the log is captured) against the ComfyUI emulator."""

from __future__ import annotations

import asyncio
import logging

import pytest
from temporalio.client import WorkflowFailureError

from tests.support.stack import GenerationStack


def capture_failure_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # The SDK logs a failed activity here; DEBUG, so the test also sees where the traceback went.
    caplog.set_level(logging.DEBUG, logger="temporalio.activity")


def lines_about(caplog: pytest.LogCaptureFixture, task_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("activities.generation") and task_id in r.getMessage()
    ]


def assert_no_traceback_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG and r.exc_info]
    assert loud == [], [f"{r.name}: {r.getMessage()}" for r in loud]


async def test_a_comfyui_execution_error_is_logged_in_one_line_with_the_traceback_at_debug(
    generation_stack: GenerationStack, caplog: pytest.LogCaptureFixture
):
    gpu = await generation_stack.start_gpu_worker("gpu-log")
    await gpu.emulator.set_faults(
        fail_on_node="SaveImage", exception_type="OSError", exception_message="disk is full"
    )
    capture_failure_logs(caplog)
    handle = await generation_stack.submit()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 30)

    (line,) = lines_about(caplog, handle.id)
    message = line.getMessage()
    assert line.levelno == logging.INFO and line.exc_info is None
    assert "ComfyUIExecutionError" in message and "disk is full" in message
    assert "\n" not in message
    assert_no_traceback_above_debug(caplog)
    assert any(
        r.name == "temporalio.activity" and r.levelno == logging.DEBUG and r.exc_info
        for r in caplog.records
    )


async def test_invalid_params_are_logged_in_one_line(
    generation_stack: GenerationStack, caplog: pytest.LogCaptureFixture
):
    capture_failure_logs(caplog)
    handle = await generation_stack.submit({"steps": 0})
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 30)

    (line,) = lines_about(caplog, handle.id)
    assert "prepare_generation" in line.getMessage() and "InvalidParams" in line.getMessage()
    assert "steps" in line.getMessage() and line.exc_info is None
    assert_no_traceback_above_debug(caplog)
