"""Session fixtures every suite shares: the Temporal dev server and the ComfyUI emulator, both as
real processes (tests/emulator/main.py is the install directory's main.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.comfyui.process import ComfyUIProcess
from api.cli.devstack.temporal_server import DEV_SERVER_DYNAMIC_CONFIG, temporal_cli
from temporal_workflows.names import SEARCH_ATTRIBUTES
from tests.support.emulator import EmulatorHandle, StartEmulator, emulator_process

# DEV_SERVER_DYNAMIC_CONFIG and temporal_cli are shared with `comfy-temporal dev`.


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    extra: list[str] = []
    for value in DEV_SERVER_DYNAMIC_CONFIG:
        extra += ["--dynamic-config-value", value]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=extra,
        # The 5 s default is tight on a loaded 2-core machine.
        dev_server_startup_timeout=timedelta(seconds=30),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture(scope="session")
async def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    """host:port of the session's dev server, for processes started by tests."""
    return temporal_env.client.service_client.config.target_host


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
