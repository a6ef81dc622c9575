"""Fixtures for end-to-end generation tests: a private pool with its own manifests, a control
worker, and GPU workers (in-process GpuWorker objects) each driving a ComfyUI emulator process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from activities.comfyui.client import ComfyUIClient
from activities.workers.control import build_control_worker
from activities.workers.gpu import GpuWorker, GpuWorkerSettings
from activities.workers.temporal_client import connect_temporal
from manifests.registry import ManifestRegistry
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.payloads import GenerationOptions, GenerationRequest
from tests.support.emulator import EmulatorHandle, StartEmulator
from tests.support.waiting import wait_for

# EmptyImage -> EmulatorSampler (one progress event per step, interruptible) -> SaveImage.
SAMPLED_IMAGE_GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0},
        "_meta": {"title": "Empty Image"},
    },
    "2": {
        "class_type": "EmulatorSampler",
        "inputs": {"images": ["1", 0], "steps": 2, "seconds_per_step": 0.0},
        "_meta": {"title": "Sampler"},
    },
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "gen"},
        "_meta": {"title": "Save Image"},
    },
}

BASE_YAML = """
width:
  type: integer
  default: 16
  min: 1
  max: 100000   # more than ComfyUI's EmptyImage allows, so ComfyUI's own validation can refuse
  targets: [{node: Empty Image, input: width}]
steps:
  type: integer
  default: 2
  min: 1
  max: 10000
  targets: [{node: Sampler, input: steps}]
seconds_per_step:
  type: float
  default: 0.0
  min: 0
  max: 10
  targets: [{node: Sampler, input: seconds_per_step}]
filename_prefix:
  type: string
  default: gen
  max_length: 100
  targets: [{node: Save Image, input: filename_prefix}]
"""

WORKFLOWS_YAML = """
sampled_image:
  workflow_file: sampled_image.json
  description: An empty image through the emulator's sampler, saved.
  parameters: [width, steps, seconds_per_step, filename_prefix]
  pool: {pool}
  timeout: 60
  retries: 2
"""


@dataclass
class RunningGpuWorker:
    worker: GpuWorker
    emulator: EmulatorHandle
    stop: asyncio.Event
    task: asyncio.Task

    @property
    def name(self) -> str:
        return self.worker.settings.name

    async def comfy_queue(self) -> dict:
        async with ComfyUIClient(self.emulator.url) as comfy:
            return await comfy.queue()

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.shield(self.task), 60)


@dataclass
class GenerationStack:
    client: Client
    address: str
    pool: str
    control_queue: str
    data_dir: Path
    start_emulator: StartEmulator
    gpu_workers: list[RunningGpuWorker] = field(default_factory=list)

    async def start_gpu_worker(
        self, name: str | None = None, *, shutdown_grace: float = 5.0, **emulator_kwargs: Any
    ) -> RunningGpuWorker:
        # Every job really executes (real jobs differ by seed anyway); caching is not our topic.
        emulator_kwargs.setdefault("extra_args", ["--cache-none"])
        emulator = await self.start_emulator(name=f"emulator:{name}", **emulator_kwargs)
        settings = GpuWorkerSettings(
            name=name or f"gpu-{uuid.uuid4().hex[:6]}",
            pool=self.pool,
            data_dir=self.data_dir,
            shutdown_grace=timedelta(seconds=shutdown_grace),
        )
        # Its own connection, as a separate process would have: the SDK refuses two Workers on
        # one task queue over the same client.
        client = await connect_temporal(self.address)
        worker = GpuWorker(client, emulator.process, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name=f"gpu worker {settings.name}")
        running = RunningGpuWorker(worker, emulator, stop, task)
        self.gpu_workers.append(running)

        async def polling() -> bool:
            if task.done():
                task.result()
            return worker.polling.is_set()

        await wait_for(polling, f"GPU worker {settings.name} to poll")
        return running

    async def submit(
        self, params: dict[str, Any] | None = None, *, worker: str | None = None
    ) -> WorkflowHandle:
        request = GenerationRequest(
            workflow_id="sampled_image",
            params=params or {},
            options=GenerationOptions(worker=worker),
        )
        return await self.client.start_workflow(
            GenerationWorkflow.run,
            request,
            id=f"gen-{uuid.uuid4()}",
            task_queue=self.control_queue,
        )


def write_sampled_image_manifests(base_dir: Path, workflows_yaml: str) -> tuple[Path, Path]:
    """BASE_YAML, the given workflows.yaml and SAMPLED_IMAGE_GRAPH under `base_dir`; returns the
    manifests and workflows folders."""
    manifests_dir = base_dir / "manifests"
    workflows_dir = base_dir / "workflows"
    manifests_dir.mkdir(parents=True)
    workflows_dir.mkdir(parents=True)
    (manifests_dir / "base.yaml").write_text(BASE_YAML)
    (manifests_dir / "workflows.yaml").write_text(workflows_yaml)
    (workflows_dir / "sampled_image.json").write_text(json.dumps(SAMPLED_IMAGE_GRAPH))
    return manifests_dir, workflows_dir


def valid_registry(manifests_dir: Path, workflows_dir: Path) -> ManifestRegistry:
    registry = ManifestRegistry(manifests_dir, workflows_dir)
    snapshot = registry.snapshot()
    assert not snapshot.errors, [str(e) for e in snapshot.errors]
    return registry


@contextlib.asynccontextmanager
async def stack_with_control_worker(
    client: Client,
    address: str,
    start_emulator: StartEmulator,
    base_dir: Path,
    pool: str,
    registry: ManifestRegistry,
) -> AsyncIterator[GenerationStack]:
    """A control worker on a queue of its own serving `registry`; GPU workers on demand
    (`await stack.start_gpu_worker(name)`), all stopped at the end."""
    control_queue = f"control-{uuid.uuid4()}"
    stack = GenerationStack(client, address, pool, control_queue, base_dir / "data", start_emulator)
    async with build_control_worker(client, registry, task_queue=control_queue):
        try:
            yield stack
        finally:
            for running in stack.gpu_workers:
                await running.shutdown()


@pytest.fixture
async def generation_stack(
    temporal_client: Client, temporal_address: str, start_emulator: StartEmulator, tmp_path: Path
) -> AsyncIterator[GenerationStack]:
    pool = f"test-{uuid.uuid4().hex[:10]}"
    registry = valid_registry(
        *write_sampled_image_manifests(tmp_path, WORKFLOWS_YAML.format(pool=pool))
    )
    async with stack_with_control_worker(
        temporal_client, temporal_address, start_emulator, tmp_path, pool, registry
    ) as stack:
        yield stack
