"""Fixtures that start the ComfyUI emulator as a real subprocess, through ComfyUIProcess, exactly
as a GPU worker starts ComfyUI (tests/emulator/main.py is the install directory's main.py)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from activities.comfyui.process import ComfyUIProcess

EMULATOR_DIR = Path(__file__).resolve().parent / "emulator"


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


@pytest_asyncio.fixture
async def start_emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[StartEmulator]:
    """Factory: `await start_emulator(extra_args=[...], start=True, **process_kwargs)` -> handle.
    Every emulator it started is stopped (whole process group) after the test."""
    processes: list[ComfyUIProcess] = []

    async def start(
        *, extra_args: Sequence[str] = (), name: str = "emulator", start: bool = True, **kwargs: Any
    ) -> EmulatorHandle:
        work_dir = tmp_path_factory.mktemp("comfyui")
        process = emulator_process(work_dir, extra_args=extra_args, name=name, **kwargs)
        processes.append(process)
        if start:
            await process.start()
        return EmulatorHandle(process, work_dir)

    yield start
    for process in processes:
        await process.stop(grace=5.0)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def shared_emulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EmulatorHandle]:
    """One emulator for the whole session, for tests that do not inject faults."""
    work_dir = tmp_path_factory.mktemp("comfyui-shared")
    process = emulator_process(work_dir, name="emulator:shared")
    await process.start()
    try:
        yield EmulatorHandle(process, work_dir)
    finally:
        await process.stop(grace=5.0)
