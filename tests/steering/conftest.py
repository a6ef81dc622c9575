"""One generation stack for the steering tests: API + control worker + GPU worker + emulator,
serving `emulator_sampler` and `emulator_previews` (the same graph with `previews: true`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.manifests import PREVIEWS_WORKFLOW, emulator_sampler_registry
from tests.support.stack import GenerationStack, generation_stack, unique
from tests.support.temporal import terminate_running


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    base = tmp_path_factory.mktemp("steering")
    async with generation_stack(
        temporal_client,
        base,
        emulator_sampler_registry(base, PREVIEWS_WORKFLOW),
        gpu_workers=[unique("steering-gpu")],
    ) as running:
        yield running


@pytest_asyncio.fixture
async def http(stack: GenerationStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def submit(http: httpx.AsyncClient, temporal_client: Client) -> AsyncIterator:  # type: ignore[type-arg]
    """submit(workflow_id, **params) -> task id; tasks still running at the end are terminated."""
    started: list[str] = []

    async def start(workflow_id: str, **params: object) -> str:
        response = await http.post("/generate", json={"workflow_id": workflow_id, "params": params})
        assert response.status_code == 202 or response.status_code == 200, response.text
        task_id: str = response.json()["task_id"]
        started.append(task_id)
        return task_id

    yield start
    await terminate_running(temporal_client, started)


@pytest_asyncio.fixture
async def started_by_cli(temporal_client: Client) -> AsyncIterator[list[str]]:
    """Task ids a CLI run started; those still running at the end are terminated."""
    started: list[str] = []
    yield started
    await terminate_running(temporal_client, started)
