"""The ComfyUI emulator as a real subprocess, started through ComfyUIProcess exactly as a GPU worker
starts ComfyUI (tests/emulator/main.py is the install directory's main.py)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from activities.comfyui.process import ComfyUIProcess

EMULATOR_DIR = Path(__file__).resolve().parent.parent / "emulator"


@dataclass
class EmulatorHandle:
    """One running emulator: its supervisor, URL and directories, plus fault switches."""

    process: ComfyUIProcess
    work_dir: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def output_dir(self) -> Path:
        return self.process.output_dir

    @property
    def input_dir(self) -> Path:
        return self.process.input_dir

    @property
    def temp_dir(self) -> Path:
        return self.process.temp_dir

    async def set_faults(self, **faults: Any) -> dict:
        """Replace the emulator's fault set, e.g. crash_on_node="EmulatorSampler"."""
        async with httpx.AsyncClient(trust_env=False) as client:
            response = await client.post(f"{self.url}/emulator/faults", json=faults, timeout=5.0)
            response.raise_for_status()
            return response.json()


StartEmulator = Callable[..., Awaitable[EmulatorHandle]]


def emulator_process(
    work_dir: Path, *, extra_args: Sequence[str] = (), name: str = "emulator", **kwargs: Any
) -> ComfyUIProcess:
    return ComfyUIProcess(
        EMULATOR_DIR,
        work_dir=work_dir,
        python=sys.executable,
        extra_args=["--cpu", *extra_args],
        start_timeout=kwargs.pop("start_timeout", 30.0),
        name=name,
        **kwargs,
    )
