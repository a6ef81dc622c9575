"""The whole generation path in one test process: the API with its embedded control worker, a real
GpuWorker (activities/workers/gpu.py) and the ComfyUI emulator as its subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from temporalio.client import Client

from activities.workers.gpu import GpuWorker, GpuWorkerSettings
from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.settings import Settings
from manifests.registry import ManifestRegistry
from tests.api.emulator_workflow import write_manifests_with_emulator_sampler
from tests.support.emulator import emulator_process


@dataclass
class GenerationStack:
    url: str
    data_dir: Path
    worker_name: str
    comfyui_url: str

    async def set_emulator_faults(self, **faults: object) -> None:
        """Replace the emulator's injected faults, e.g. fail_on_node="ImageInvert"."""
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.post(f"{self.comfyui_url}/emulator/faults", json=faults)
            response.raise_for_status()


@contextlib.asynccontextmanager
async def api_with_gpu_worker(
    client: Client,
    base_dir: Path,
    registry: ManifestRegistry,
    *,
    worker_prefix: str,
    emulator_name: str,
    shutdown_grace: timedelta | None = None,
    **settings: object,
) -> AsyncIterator[GenerationStack]:
    """The API serving `registry` with its embedded control worker, and one GPU worker (named
    `<worker_prefix>-<random>`) driving a ComfyUI emulator; yields once the worker polls."""
    data_dir = base_dir / "data"
    name = f"{worker_prefix}-{uuid.uuid4().hex[:6]}"
    comfyui = emulator_process(base_dir / "comfyui", name=emulator_name)
    gpu_settings = GpuWorkerSettings(name=name, data_dir=data_dir)
    if shutdown_grace is not None:
        gpu_settings = dataclasses.replace(gpu_settings, shutdown_grace=shutdown_grace)
    gpu = GpuWorker(client, comfyui, gpu_settings)
    stop = asyncio.Event()
    gpu_run = asyncio.create_task(gpu.run(stop), name=name)
    app = create_app(
        Settings(data_dir=data_dir, embedded_control_worker=True, **settings),  # type: ignore[arg-type]
        temporal_client=client,
        registry=registry,
    )
    try:
        async with serve_in_background(app) as url:
            polling = asyncio.create_task(gpu.polling.wait())
            await asyncio.wait({polling, gpu_run}, timeout=60, return_when="FIRST_COMPLETED")
            if gpu_run.done():
                gpu_run.result()  # raises why the worker stopped
            if not polling.done():
                polling.cancel()
                raise TimeoutError("the GPU worker did not start polling within 60 s")
            yield GenerationStack(
                url=url, data_dir=data_dir, worker_name=name, comfyui_url=comfyui.url
            )
    finally:
        stop.set()
        await gpu_run


IDLE_POOL_WORKFLOW_ID = "idle_pool_image"


@contextlib.asynccontextmanager
async def api_without_gpu_workers(
    base_dir: Path, client: Client, pool: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its control worker, and IDLE_POOL_WORKFLOW_ID, a workflow whose GPU pool
    (`pool`) nobody polls: a job waits for a GPU until it is cancelled."""
    manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(base_dir)
    with (manifests_dir / "workflows.yaml").open("a") as f:
        f.write(
            f"\n{IDLE_POOL_WORKFLOW_ID}:\n"
            "  workflow_file: smoke_image.json\n  description: no GPU\n"
            f"  parameters: [width]\n  pool: {pool}\n"
            "  overrides:\n    width: {targets: [{node: Empty Image, input: width}]}\n"
        )
    app = create_app(
        Settings(data_dir=base_dir / "data", embedded_control_worker=True),
        temporal_client=client,
        registry=ManifestRegistry(manifests_dir, workflows_dir),
    )
    async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


@contextlib.asynccontextmanager
async def generation_stack(client: Client, base_dir: Path) -> AsyncIterator[GenerationStack]:
    manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(base_dir)
    registry = ManifestRegistry(manifests_dir, workflows_dir)
    async with api_with_gpu_worker(
        client, base_dir, registry, worker_prefix="api-test-gpu", emulator_name="emulator:api"
    ) as running:
        yield running
