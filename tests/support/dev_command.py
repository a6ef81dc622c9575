"""`comfy-temporal dev` as a user starts it: a real process tree on free loopback ports, with the
ComfyUI emulator as its ComfyUI; started, stopped by SIGTERM, or killed whole after a failure."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from api.cli.devstack.child_process import descendants
from api.cli.devstack.http_server import free_port
from tests.support.emulator import EMULATOR_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]

# Settings of the caller's environment that would point dev elsewhere than the test means.
_INHERITED = ("COMFYUI_PATH", "COMFYUI_URL", "COMFYUI_ARGS", "COMFYUI_PYTHON", "TEMPORAL_ADDRESS")


@dataclass
class DevRun:
    process: asyncio.subprocess.Process
    api_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


async def start_dev(
    data_dir: Path,
    log: Path,
    *,
    with_comfyui: bool = True,
    env: Mapping[str, str] | None = None,
) -> DevRun:
    """Starts dev (the emulator as ComfyUI unless `with_comfyui` is false; `env` added to the
    environment) and returns once its banner says it is up."""
    api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
    child_env = dict(os.environ)
    for name in _INHERITED:
        child_env.pop(name, None)
    if with_comfyui:
        child_env.update(
            COMFYUI_PATH=str(EMULATOR_DIR), COMFYUI_PYTHON=sys.executable, COMFYUI_ARGS="--cpu"
        )
    child_env.update(env or {})
    argv = [
        sys.executable, "-m", "api.cli.main", "dev",
        "--data-dir", str(data_dir),
        "--port", str(api_port),
        "--temporal-port", str(temporal_port),
        "--ui-port", str(ui_port),
        "--shutdown-grace", "15",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO_ROOT, env=child_env, stdout=out, stderr=out, start_new_session=True
        )
    run = DevRun(process, f"http://127.0.0.1:{api_port}", log)
    async with asyncio.timeout(60):
        while "Press Ctrl-C to stop." not in run.output():
            assert process.returncode is None, run.output()
            await asyncio.sleep(0.1)
    return run


async def stop_dev(run: DevRun) -> int:
    run.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        return await run.process.wait()


def kill_dev(run: DevRun) -> None:
    """Kills what is left of a run, whole tree, so a failed test leaves no processes behind."""
    if run.process.returncode is not None:
        return
    for pid in [run.process.pid, *descendants(run.process.pid)]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
