"""The project's commands as real processes for tests and benches: the `comfy-temporal` command line
of a GPU worker driving the ComfyUI emulator, a clean environment for it, and the ComfyUI processes
a worker left behind (its ComfyUI runs in a session of its own and can outlive it)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

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
