"""One generation stack for the steering tests: API + control worker + GPU worker + emulator.

Like tests/api/stack.py, plus `emulator_previews`: the emulator_sampler graph with
`previews: true`. The emulator keeps ComfyUI's default `--preview-method none`, so its
EmulatorSampler sends a preview per step only for prompts that ask for one in `extra_data`
(comfyui-protocol.md §1.4, §3.3).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from manifests.registry import ManifestRegistry
from tests.api.emulator_workflow import EMULATOR_WORKFLOW_ID, write_manifests_with_emulator_sampler
from tests.api.stack import GenerationStack, api_with_gpu_worker
from tests.support.temporal import terminate_running

PREVIEWS_WORKFLOW_ID = "emulator_previews"
_widths = itertools.count(16)


def next_width() -> int:
    """An image width no other job of this session used: tells its prompt apart in ComfyUI."""
    return next(_widths)


_PREVIEWS_ENTRY = f"""
{PREVIEWS_WORKFLOW_ID}:
  workflow_file: {EMULATOR_WORKFLOW_ID}.json
  description: Emulator only - the sampler workflow with sampler previews on.
  parameters: [steps, seconds_per_step, width, height]
  overrides:
    steps: {{default: 10, targets: [{{node: Sampler, input: steps}}]}}
    width: {{default: 32, targets: [{{node: Empty Image, input: width}}]}}
    height: {{default: 32, targets: [{{node: Empty Image, input: height}}]}}
  timeout: 120
  previews: true
"""


@contextlib.asynccontextmanager
async def steering_stack(client: Client, base_dir: Path) -> AsyncIterator[GenerationStack]:
    manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(base_dir)
    with (manifests_dir / "workflows.yaml").open("a") as f:
        f.write(_PREVIEWS_ENTRY)
    registry = ManifestRegistry(manifests_dir, workflows_dir)
    assert not registry.snapshot().errors, registry.snapshot().errors
    # A job left running at the end must not hold the teardown for the default 5 minutes.
    async with api_with_gpu_worker(
        client,
        base_dir,
        registry,
        worker_prefix="steering-gpu",
        emulator_name="emulator:steering",
        shutdown_grace=timedelta(seconds=5),
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    async with steering_stack(temporal_client, tmp_path_factory.mktemp("steering")) as running:
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
