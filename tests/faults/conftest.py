"""Fixtures of the fault suite: a private pool whose workflow has a short stall limit, GPU workers
driving ComfyUI emulator processes, and Temporal dev servers of the tests' own (for restarts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from api.cli.devstack.http_server import free_port
from api.cli.devstack.temporal_server import DevServerConfig
from tests.support.manifests import STALL_TIMEOUT
from tests.support.stack import GenerationStack, private_pool_stack
from tests.support.temporal import RestartableDevServer


@pytest.fixture
async def fault_stack(temporal_client: Client, tmp_path: Path) -> AsyncIterator[GenerationStack]:
    """A control worker on its own queue for the stall-limited workflow; GPU workers on demand
    (`await stack.start_gpu_worker(name)`), all stopped after the test."""
    async with private_pool_stack(
        temporal_client, tmp_path, "faults", stall_timeout=STALL_TIMEOUT
    ) as stack:
        yield stack


@pytest_asyncio.fixture
async def own_dev_server(tmp_path: Path) -> AsyncIterator[RestartableDevServer]:
    """A dev server of this test alone (the session's server is never stopped)."""
    server = RestartableDevServer(
        DevServerConfig(
            db_file=tmp_path / "temporal" / "temporal.db",
            port=free_port(),
            ui_port=None,
            log_file=tmp_path / "temporal" / "server.log",
        )
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
