"""The API over real HTTP (uvicorn on a free loopback port) against the session's Temporal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.settings import Settings
from tests.support.temporal import StartedTasks, terminate_running


@pytest.fixture(scope="session")
def api_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-data")


@pytest_asyncio.fixture(scope="session")
async def api_url(temporal_client: Client, api_data_dir: Path) -> AsyncIterator[str]:
    """An API without workers: jobs it starts stay PENDING unless a test runs workers."""
    app = create_app(Settings(data_dir=api_data_dir), temporal_client=temporal_client)
    async with serve_in_background(app) as url:
        yield url


@pytest_asyncio.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def started_tasks(temporal_client: Client) -> AsyncIterator[StartedTasks]:
    tasks = StartedTasks()
    yield tasks
    await terminate_running(temporal_client, tasks)
