"""`comfy-temporal dev` as a user runs it: a real process tree (Temporal dev server, API with the
control worker, GPU worker, the emulator as ComfyUI), stopped by SIGTERM, restarted on its data."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.cli.devstack.child_process import alive, descendants
from api.cli.devstack.http_server import free_port
from tests.support.dev_command import REPO_ROOT, DevRun, kill_dev, start_dev, stop_dev
from tests.support.emulator import EMULATOR_DIR
from tests.support.environment import python3_without_comfyui_requirements
from tests.support.metrics import scrape
from tests.support.waiting import poll_task


@pytest.fixture
def dev_runs() -> Iterator[list[DevRun]]:
    """Whatever a test left running is killed, whole tree, so a failure leaves no processes."""
    runs: list[DevRun] = []
    yield runs
    for run in runs:
        kill_dev(run)


async def _wait_ready(http: httpx.AsyncClient) -> dict:
    async with asyncio.timeout(60):
        while True:
            response = await http.get("/ready")
            if response.status_code == 200:
                return response.json()
            await asyncio.sleep(0.1)


async def _wait_done(http: httpx.AsyncClient, task_id: str) -> dict:
    return await poll_task(
        http, task_id, lambda b: b["status"] in ("SUCCESS", "FAILURE", "CANCELLED")
    )


async def test_dev_runs_a_job_stops_cleanly_and_remembers_it_after_restart(
    tmp_path: Path, dev_runs: list[DevRun]
) -> None:
    data_dir = tmp_path / "data"
    first = await start_dev(data_dir, tmp_path / "dev1.log")
    dev_runs.append(first)
    output = first.output()
    assert f"{first.api_url}/docs" in output
    assert "Temporal Web UI:  http://127.0.0.1:" in output

    async with httpx.AsyncClient(base_url=first.api_url, timeout=30) as http:
        await _wait_ready(http)
        accepted = await http.post("/generate", json={"workflow_id": "smoke_image"})
        assert accepted.status_code == 202
        task_id = accepted.json()["task_id"]
        done = await _wait_done(http, task_id)
        assert done["status"] == "SUCCESS", done
    # The banner names both metrics endpoints; each counted the job.
    assert f"{first.api_url}/metrics (API, control worker)" in output
    gpu_metrics = re.search(r"(http://127\.0\.0\.1:\d+/metrics) \(GPU worker\)", output)
    assert gpu_metrics is not None, output
    api = await scrape(f"{first.api_url}/metrics")
    assert api.value("comfy_generations_total", workflow="smoke_image", status="SUCCESS") == 1
    assert (await scrape(gpu_metrics.group(1))).total("comfy_queue_wait_seconds_count") == 1

    tree = descendants(first.process.pid)
    assert len(tree) >= 3, first.output()  # Temporal, GPU worker, ComfyUI emulator
    assert await stop_dev(first) == 0, first.output()
    assert [pid for pid in tree if alive(pid)] == []
    assert (data_dir / "temporal.db").is_file()

    second = await start_dev(data_dir, tmp_path / "dev2.log", with_comfyui=False)
    dev_runs.append(second)
    assert "jobs will wait for a GPU worker" in second.output()
    async with httpx.AsyncClient(base_url=second.api_url, timeout=30) as http:
        again = (await http.get(f"/tasks/{task_id}")).json()
        assert again["status"] == "SUCCESS"
        download = await http.get(again["result"]["download_url"])
        assert download.status_code == 200 and download.content.startswith(b"\x89PNG")
    tree = descendants(second.process.pid)
    assert await stop_dev(second) == 0, second.output()
    assert [pid for pid in tree if alive(pid)] == []


async def test_api_command_reaches_temporal_by_env_and_embeds_a_control_worker(
    tmp_path: Path, temporal_address: str
) -> None:
    port = free_port()
    env = dict(os.environ, TEMPORAL_ADDRESS=temporal_address)
    env.pop("TEMPORAL_NAMESPACE", None)
    log = tmp_path / "api.log"
    argv = [sys.executable, "-m", "api.cli.main", "api", "--port", str(port),
            "--data-dir", str(tmp_path), "--with-control-worker"]  # fmt: skip
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async with asyncio.timeout(30):
                while True:
                    assert process.returncode is None, log.read_text()
                    try:
                        ready = (await http.get("/ready")).json()
                        if f"api-{process.pid}@" in " ".join(ready["control_pollers"]):
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0, log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_while_dev_starts_leaves_no_process_behind(
    tmp_path: Path, dev_runs: list[DevRun]
) -> None:
    log = tmp_path / "dev.log"
    env = dict(os.environ, COMFYUI_PATH=str(EMULATOR_DIR), COMFYUI_PYTHON=sys.executable)
    env.pop("TEMPORAL_ADDRESS", None)
    argv = [sys.executable, "-m", "api.cli.main", "dev", "--data-dir", str(tmp_path / "data"),
            "--port", str(free_port()), "--temporal-port", str(free_port()),
            "--headless"]  # fmt: skip
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )
    dev_runs.append(DevRun(process, "", log))
    seen: set[int] = set()
    async with asyncio.timeout(60):
        while not seen:  # the Temporal dev server was spawned: startup is under way
            assert process.returncode is None, log.read_text()
            seen |= descendants(process.pid)
            await asyncio.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        while process.returncode is None:
            seen |= descendants(process.pid)
            try:
                await asyncio.wait_for(process.wait(), timeout=0.05)
            except TimeoutError:
                pass
    assert seen, "the dev server should have been running"
    assert [pid for pid in seen if alive(pid)] == [], log.read_text()
    assert "stopped" in log.read_text()


def headless_dev_argv(data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "api.cli.main", "dev", "--data-dir", str(data_dir),
            "--port", str(free_port()), "--temporal-port", str(free_port()),
            "--headless"]  # fmt: skip


async def test_dev_with_a_comfyui_path_that_is_no_comfyui_refuses_to_start(tmp_path: Path) -> None:
    not_comfyui = tmp_path / "ComfyUI"
    not_comfyui.mkdir()
    env = dict(os.environ, COMFYUI_PATH=str(not_comfyui))
    env.pop("COMFYUI_URL", None)
    argv = headless_dev_argv(tmp_path / "data")
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO_ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 2, (out + err).decode()
    assert f"COMFYUI_PATH / --comfyui {not_comfyui}: no main.py there" in err.decode()
    assert not (tmp_path / "data" / "temporal.db").exists()  # nothing was started


async def test_dev_stops_with_one_error_when_comfyui_cannot_run_on_python3_from_path(
    tmp_path: Path, dev_runs: list[DevRun]
) -> None:
    log = tmp_path / "dev.log"
    env = dict(os.environ, COMFYUI_PATH=str(EMULATOR_DIR))
    env["PATH"] = python3_without_comfyui_requirements(tmp_path)
    for name in ("COMFYUI_PYTHON", "COMFYUI_URL", "COMFYUI_ARGS", "TEMPORAL_ADDRESS"):
        env.pop(name, None)
    argv = headless_dev_argv(tmp_path / "data")
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )
    dev_runs.append(DevRun(process, "", log))
    seen: set[int] = set()
    async with asyncio.timeout(90):
        while process.returncode is None:
            seen |= descendants(process.pid)
            try:
                await asyncio.wait_for(process.wait(), timeout=0.1)
            except TimeoutError:
                pass
    output = log.read_text()
    assert process.returncode == 3, output
    assert "COMFYUI_PYTHON is not set and the install has no venv" in output
    assert "Set COMFYUI_PYTHON (or --comfyui-python)" in output
    assert output.count("Traceback (most recent call last)") == 1, output  # ComfyUI's own, once
    assert "restarting" not in output
    assert [pid for pid in seen if alive(pid)] == [], output
