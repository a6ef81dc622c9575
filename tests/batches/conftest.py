"""One generation stack for the batch tests: API + control worker + a GPU worker on the emulator,
serving `emulator_sampler`, and `idle_pool_image` on a pool no GPU worker polls (its jobs wait
for a GPU until they are cancelled)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.batches import Batches
from tests.support.manifests import emulator_sampler_registry, idle_pool_workflow
from tests.support.stack import GenerationStack, generation_stack, unique


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    base = tmp_path_factory.mktemp("batches")
    idle_pool = f"idle-{uuid.uuid4().hex[:8]}"
    async with generation_stack(
        temporal_client,
        base,
        emulator_sampler_registry(base, idle_pool_workflow(idle_pool)),
        gpu_workers=[unique("batches-gpu")],
    ) as running:
        yield running


@pytest_asyncio.fixture
async def http(stack: GenerationStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=60) as client:
        yield client


@pytest_asyncio.fixture
async def batches(http: httpx.AsyncClient, temporal_client: Client) -> AsyncIterator[Batches]:
    """Starts batches through the API; whatever of them still runs at the end is terminated."""
    made = Batches(http, temporal_client)
    yield made
    await made.cleanup()
