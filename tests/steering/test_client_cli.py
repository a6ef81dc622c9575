"""The command-line client end to end: `submit` (progress, --wait, --out, exit codes) and
`tasks list|show|cancel`, against the real stack."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image
from temporalio.client import Client

from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.cli.main import main as cli_main
from api.settings import Settings
from tests.support.graphs import next_width
from tests.support.manifests import EMULATOR_WORKFLOW_ID
from tests.support.stack import GenerationStack
from tests.support.waiting import poll_task

Submit = Callable[..., Awaitable[str]]


def _cli_env(stack: GenerationStack) -> dict[str, str]:
    return {**os.environ, "COMFY_API_URL": stack.url}


async def _cli_process(stack: GenerationStack, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "api.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=_cli_env(stack),
    )


async def _cli_in_process(
    stack: GenerationStack, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = await asyncio.to_thread(cli_main, [*args, "--api", stack.url])
    out, err = capsys.readouterr()
    return code, out, err


async def _status(http: httpx.AsyncClient, task_id: str) -> dict:
    return (await http.get(f"/tasks/{task_id}")).json()


async def _wait_for_status(
    http: httpx.AsyncClient, task_id: str, status: str, *, timeout: float
) -> dict:
    """Polls GET /tasks/{id} until the task has `status`; returns that body."""
    return await poll_task(http, task_id, lambda body: body["status"] == status, timeout)


async def test_submit_wait_out_shows_progress_and_downloads_the_png(
    stack: GenerationStack, tmp_path: Path, started_by_cli: list[str]
) -> None:
    width = next_width()
    completed = await _cli_process(
        stack,
        "submit",
        EMULATOR_WORKFLOW_ID,
        "-p",
        "steps=6",
        "-p",
        "seconds_per_step=0.1",
        "-p",
        f"width={width}",
        "--wait",
        "--out",
        str(tmp_path / "out"),
    )
    assert completed.returncode == 0, completed.stderr
    task_id, *paths = completed.stdout.split()
    started_by_cli.append(task_id)
    assert f"{task_id}: SUCCESS" in completed.stderr
    assert len(paths) == 1 and Path(paths[0]).parent == tmp_path / "out"
    image = Image.open(io.BytesIO(Path(paths[0]).read_bytes()))
    assert image.format == "PNG" and image.size == (width, 32)


async def test_submit_with_an_invalid_param_exits_1_naming_it(
    stack: GenerationStack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await _cli_in_process(
        stack, capsys, "submit", EMULATOR_WORKFLOW_ID, "-p", "steps=0", "--wait"
    )
    assert code == 1
    assert out == ""
    assert err.startswith("error: params.steps: ")


async def test_submit_wait_of_a_failing_job_exits_1_with_the_reason(
    stack: GenerationStack, capsys: pytest.CaptureFixture[str], started_by_cli: list[str]
) -> None:
    await stack.set_emulator_faults(fail_on_node="EmulatorSampler")
    try:
        code, out, err = await _cli_in_process(
            stack,
            capsys,
            "submit",
            EMULATOR_WORKFLOW_ID,
            "-p",
            "steps=2",
            "-p",
            f"width={next_width()}",
            "--wait",
        )
    finally:
        await stack.set_emulator_faults()
    task_id = out.split()[0]
    started_by_cli.append(task_id)
    assert code == 1
    assert out.strip() == task_id  # no output paths
    assert f"{task_id}: FAILURE: ComfyUIExecutionError" in err
    assert "EmulatorSampler" in err


async def test_ctrl_c_while_waiting_exits_130_and_the_task_goes_on(
    stack: GenerationStack, http: httpx.AsyncClient, started_by_cli: list[str]
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli.main",
        "submit",
        EMULATOR_WORKFLOW_ID,
        "-p",
        "steps=40",
        "-p",
        "seconds_per_step=0.1",
        "-p",
        f"width={next_width()}",
        "--wait",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_cli_env(stack),
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.timeout(60):
            task_id = (await process.stdout.readline()).decode().strip()
            started_by_cli.append(task_id)
            while b"PROGRESS" not in await process.stderr.readline():
                pass
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest = await process.stderr.read()
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 130
    assert b"stopped waiting; the task goes on" in rest
    assert b"Traceback" not in rest
    assert (await _status(http, task_id))["status"] == "PROGRESS"


async def test_tasks_show_prints_status_and_result(
    stack: GenerationStack,
    http: httpx.AsyncClient,
    submit: Submit,
    capsys: pytest.CaptureFixture[str],
) -> None:
    task_id = await submit(EMULATOR_WORKFLOW_ID, steps=2, seconds_per_step=0.01)
    await _wait_for_status(http, task_id, "SUCCESS", timeout=60)

    code, out, _ = await _cli_in_process(stack, capsys, "tasks", "show", task_id)

    assert code == 0
    assert f"task        {task_id}" in out
    assert "status      SUCCESS  (Temporal: COMPLETED)" in out
    assert f"output      {stack.url}/tasks/{task_id}/outputs/" in out


async def test_tasks_list_filters_by_workflow_id(
    stack: GenerationStack, submit: Submit, capsys: pytest.CaptureFixture[str]
) -> None:
    smoke = await submit("smoke_image", width=8, height=8)
    sampler = await submit(EMULATOR_WORKFLOW_ID, steps=2, seconds_per_step=0.01)
    async with asyncio.timeout(30):  # visibility is eventually consistent
        while True:
            code, out, _ = await _cli_in_process(
                stack, capsys, "tasks", "list", "--workflow-id", "smoke_image", "--limit", "500"
            )
            assert code == 0
            if smoke in out:
                break
            await asyncio.sleep(0.1)
    assert out.splitlines()[0].split() == ["TASK", "WORKFLOW", "STATUS", "CREATED"]
    assert sampler not in out
    assert all(line.split()[1] == "smoke_image" for line in out.splitlines()[1:])


async def test_tasks_cancel_stops_a_running_task_with_the_reason(
    temporal_client: Client,
    stack: GenerationStack,
    http: httpx.AsyncClient,
    submit: Submit,
    capsys: pytest.CaptureFixture[str],
) -> None:
    task_id = await submit(EMULATOR_WORKFLOW_ID, steps=100, seconds_per_step=0.1)
    await _wait_for_status(http, task_id, "PROGRESS", timeout=30)

    code, out, _ = await _cli_in_process(
        stack, capsys, "tasks", "cancel", task_id, "--reason", "changed my mind"
    )

    assert code == 0
    assert out.startswith(f"{task_id}: cancellation requested")
    body = await _wait_for_status(http, task_id, "CANCELLED", timeout=30)
    assert body["result"].startswith("cancelled")
    history = await temporal_client.get_workflow_handle(task_id).fetch_history()
    requested = [
        e.workflow_execution_cancel_requested_event_attributes.cause
        for e in history.events
        if e.HasField("workflow_execution_cancel_requested_event_attributes")
    ]
    assert requested == ["changed my mind"]
    code, out, _ = await _cli_in_process(stack, capsys, "tasks", "cancel", task_id)
    assert code == 0
    assert "already finished with status CANCELLED" in out


async def test_tasks_list_sends_the_api_key_an_api_requires(
    temporal_client: Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(
        Settings(data_dir=tmp_path, api_keys=("steering-key",)), temporal_client=temporal_client
    )
    async with serve_in_background(app) as url:
        without = await asyncio.to_thread(cli_main, ["tasks", "list", "--api", url])
        _, refused = capsys.readouterr()
        monkeypatch.setenv("COMFY_API_KEY", "steering-key")
        with_key = await asyncio.to_thread(cli_main, ["tasks", "list", "--api", url])
        listed, _ = capsys.readouterr()
    assert without == 1
    assert refused.startswith("error: ") and "API key" in refused
    assert with_key == 0
    assert listed.splitlines()[0].split() == ["TASK", "WORKFLOW", "STATUS", "CREATED"]
