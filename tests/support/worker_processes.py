"""The project's commands as real processes for tests and benches: `comfy-temporal gpu-worker`
driving the ComfyUI emulator and `comfy-temporal control-worker`, each started, stopped with SIGTERM
or killed, a clean environment for them, and the ComfyUI processes a worker left behind (its ComfyUI
runs in a session of its own and can outlive it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.support.emulator import EMULATOR_DIR

COMFY_TEMPORAL = str(Path(sys.executable).parent / "comfy-temporal")


def clean_environment() -> dict[str, str]:
    """This process's environment without COMFY* and TEMPORAL_* values, which would configure the
    child instead of its command line."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("COMFY", "TEMPORAL_"))}


def gpu_worker_command(
    *, pool: str, name: str, data_dir: Path, temporal_address: str | None, shutdown_grace: float
) -> list[str]:
    """`comfy-temporal gpu-worker` launching the ComfyUI emulator on the CPU, with caching off;
    without `temporal_address` it finds Temporal through the environment, as in production."""
    address = ["--temporal-address", temporal_address] if temporal_address else []
    return [
        COMFY_TEMPORAL, "gpu-worker",
        "--comfyui", str(EMULATOR_DIR),
        "--comfyui-python", sys.executable,
        "--comfyui-arg=--cpu", "--comfyui-arg=--cache-none",
        "--pool", pool,
        "--name", name,
        "--data-dir", str(data_dir),
        *address,
        "--shutdown-grace", f"{shutdown_grace:g}",
    ]  # fmt: skip


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (a worker's private ComfyUI directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def kill_processes_mentioning(text: str) -> None:
    """SIGKILL to every process whose command line contains `text`; one may exit first."""
    for pid in processes_mentioning(text):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class WorkerProcess:
    """One worker command as a process, logging to `<log_dir>/<name>.log` across its restarts;
    started once its log says it polls."""

    ready_marker = ""

    def __init__(self, name: str, address: str, log_dir: Path) -> None:
        self.name = name
        self.address = address
        self.log_path = log_dir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._ready_line = ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return clean_environment()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until its log shows `ready_marker` (from this start)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(), env=self.environment(), stdout=log, stderr=log
            )
        self.starts += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.name} exited at startup:\n{self.log_tail()}")
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
            if self.ready_marker in text:
                self._ready_line = text.split(self.ready_marker, 1)[1].split("\n", 1)[0]
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} did not start polling within {timeout} s")

    async def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, as a deploy sends it; the exit code once the process has drained and exited."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL for whatever is left after 30 s (test and bench cleanup)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 30)
        await self.kill()

    def log_tail(self, size: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-size:]


class GpuWorkerProcess(WorkerProcess):
    """One `comfy-temporal gpu-worker` process (and the ComfyUI emulator it launches)."""

    ready_marker = ": ComfyUI healthy at "

    def __init__(
        self,
        name: str,
        data_dir: Path,
        address: str,
        log_dir: Path,
        *,
        pool: str,
        shutdown_grace: float = 5,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(name, address, log_dir)
        self.data_dir = data_dir
        self.pool = pool
        self.shutdown_grace = shutdown_grace
        # More `gpu-worker` flags, e.g. --recycle-rss-mb or --comfyui-arg=--leak-mb-per-prompt=1.
        self.extra_args = list(extra_args)

    def command(self) -> list[str]:
        return (
            gpu_worker_command(
                pool=self.pool,
                name=self.name,
                data_dir=self.data_dir,
                temporal_address=self.address,
                shutdown_grace=self.shutdown_grace,
            )
            + self.extra_args
        )

    @property
    def comfyui_dir(self) -> Path:
        return self.data_dir / "comfyui" / self.name

    @property
    def comfyui_output_dir(self) -> Path:
        return self.comfyui_dir / "output"

    @property
    def comfyui_url(self) -> str | None:
        """The URL of the ComfyUI this start launched, as the worker logged it."""
        if not self.running or not self._ready_line:
            return None
        return self._ready_line.split(";", 1)[0].strip()

    async def kill(self) -> None:
        """SIGKILL to the worker and to its ComfyUI: the host is gone, nothing says goodbye."""
        await super().kill()
        kill_processes_mentioning(str(self.comfyui_dir))

    async def set_faults(self, **faults: Any) -> bool:
        """Replace the faults of this worker's ComfyUI; False when it does not answer now."""
        url = self.comfyui_url
        if url is None:
            return False
        try:
            async with httpx.AsyncClient(trust_env=False) as http:
                response = await http.post(f"{url}/emulator/faults", json=faults, timeout=2.0)
            return response.status_code == 200
        except httpx.HTTPError:
            return False


class ControlWorkerProcess(WorkerProcess):
    """One `comfy-temporal control-worker` process serving the comfy-control queue."""

    ready_marker = "control worker polling"

    def __init__(
        self,
        name: str,
        address: str,
        log_dir: Path,
        *,
        manifests_dir: Path,
        workflows_dir: Path,
        data_dir: Path,
    ) -> None:
        super().__init__(name, address, log_dir)
        self.manifests_dir = manifests_dir
        self.workflows_dir = workflows_dir
        self.data_dir = data_dir

    def command(self) -> list[str]:
        return [
            COMFY_TEMPORAL, "control-worker",
            "--manifests", str(self.manifests_dir),
            "--workflows", str(self.workflows_dir),
            "--data-dir", str(self.data_dir),
            "--temporal-address", self.address,
        ]  # fmt: skip
