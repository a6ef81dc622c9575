"""`--log-format json` on a GPU worker process: every line it writes is one JSON object, every
line about a job names its task id (with workflow, worker and attempt), and an expected failure
is still one line without a traceback."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from activities.io.ports import free_port
from tests.support.stack import GenerationStack
from tests.support.worker_processes import clean_environment, gpu_worker_command

WORKER = "gpu-json"


async def run_two_jobs_on_a_json_logging_worker(
    stack: GenerationStack, data_dir: Path, log_path: Path
) -> tuple[str, str]:
    """A success and a job ComfyUI refuses, on a `gpu-worker --log-format json` process that is
    stopped afterwards; returns their task ids."""
    command = gpu_worker_command(
        pool=stack.pool,
        name=WORKER,
        data_dir=data_dir,
        temporal_address=stack.address,
        shutdown_grace=10,
    )
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command,
            "--log-format", "json",
            # With a metrics port the worker's Temporal runtime is its own: its core's lines
            # must be JSON too.
            "--metrics-port", str(free_port()),
            env=clean_environment(), stdout=log, stderr=log,
        )  # fmt: skip
    try:
        succeeding = await stack.submit({"steps": 2})
        await asyncio.wait_for(succeeding.result(), 60)
        # Wider than ComfyUI's EmptyImage allows: refused by ComfyUI's validation on the worker.
        refused = await stack.submit({"width": 100000})
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(refused.result(), 60)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return succeeding.id, refused.id


def parsed_lines(log_path: Path) -> list[dict[str, Any]]:
    lines = log_path.read_text().splitlines()
    assert lines, "the worker wrote nothing"
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
    return parsed


def about(lines: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """Lines that are about the job: they name it in their message or in their fields."""
    return [line for line in lines if task_id in line["message"] or line.get("task_id") == task_id]


async def test_a_json_logging_gpu_worker_names_the_job_in_every_line_about_it(
    generation_stack: GenerationStack, tmp_path: Path
):
    log_path = tmp_path / "gpu-worker.log"
    succeeded, refused = await run_two_jobs_on_a_json_logging_worker(
        generation_stack, tmp_path / "worker-data", log_path
    )
    lines = parsed_lines(log_path)
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line

    success_lines = about(lines, succeeded)
    assert success_lines, lines
    for line in success_lines:
        assert line.get("task_id") == succeeded, line
    job = {"task_id": succeeded, "workflow": "sampled_image", "worker": WORKER, "attempt": 1}
    assert any(job.items() <= line.items() for line in success_lines), success_lines

    failure_lines = about(lines, refused)
    for line in failure_lines:
        assert line.get("task_id") == refused and "exception" not in line, line
    (failure,) = [line for line in failure_lines if "ComfyUIValidationError" in line["message"]]
    assert failure["level"] == "INFO" and failure["worker"] == WORKER
