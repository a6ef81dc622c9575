"""The API over real HTTP (uvicorn on a free loopback port) against the session's Temporal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.stack import generation_stack
from tests.support.temporal import StartedTasks, terminate_running


@pytest.fixture(scope="session")
def api_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="session")
def api_data_dir(api_base_dir: Path) -> Path:
    return api_base_dir / "data"


@pytest_asyncio.fixture(scope="session")
async def api_url(temporal_client: Client, api_base_dir: Path) -> AsyncIterator[str]:
    """An API without workers: jobs it starts stay PENDING unless a test runs workers."""
    async with generation_stack(temporal_client, api_base_dir, control_worker=None) as stack:
        yield stack.url


@pytest_asyncio.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def started_tasks(temporal_client: Client) -> AsyncIterator[StartedTasks]:
    tasks = StartedTasks()
    yield tasks
    await terminate_running(temporal_client, tasks)
