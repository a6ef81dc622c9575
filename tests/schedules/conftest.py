"""One generation stack (API + control worker, a real GPU worker, the ComfyUI emulator) for all
schedule tests, on the session's Temporal dev server, with manifests in a temporary directory that
tests may edit (the registry reloads them on change).

Schedules in these tests never fire by themselves (their first time is a week away); runs are
started with trigger, so every run a test sees is one it asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.manifests import emulator_sampler_registry
from tests.support.schedules import PROBE_WIDTH_MAX, Schedules, ScheduleStack
from tests.support.stack import generation_stack, unique


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def schedule_stack(
    temporal_client: Client,
    temporal_address: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ScheduleStack]:
    base = tmp_path_factory.mktemp("schedules")
    async with generation_stack(
        temporal_client,
        base,
        emulator_sampler_registry(base),
        gpu_workers=[unique("schedules-gpu")],
    ) as running:
        workflows_yaml = base / "manifests" / "workflows.yaml"
        stack = ScheduleStack(
            url=running.url,
            temporal_address=temporal_address,
            workflows_yaml=workflows_yaml,
            shipped_text=workflows_yaml.read_text(),
        )
        stack.set_probe_width_max(PROBE_WIDTH_MAX)
        yield stack


@pytest_asyncio.fixture
async def http(schedule_stack: ScheduleStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=schedule_stack.url, timeout=30) as client:
        yield client


@pytest.fixture
def probe_manifest(schedule_stack: ScheduleStack) -> Iterator[ScheduleStack]:
    """A test that edits `schedule_probe` gets the original back afterwards."""
    yield schedule_stack
    schedule_stack.set_probe_width_max(PROBE_WIDTH_MAX)


@pytest_asyncio.fixture
async def schedules(http: httpx.AsyncClient) -> AsyncIterator[Schedules]:
    made = Schedules(http)
    yield made
    await made.cleanup()
