"""The service on an object store, in one test process: the API with its embedded control worker
and a GPU worker driving a ComfyUI emulator, each with a data directory of its own (nothing is
shared on disk: outputs, inputs and previews go through the S3 server)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from activities.workers.gpu import GpuWorker, GpuWorkerSettings
from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.settings import Settings
from manifests.registry import ManifestRegistry
from tests.support.emulator import emulator_process

READY_SECONDS = 60.0


@dataclass
class StoreStack:
    url: str
    api_data_dir: Path
    gpu_data_dir: Path
    comfyui_output_dir: Path


@contextlib.asynccontextmanager
async def stack_on_store(
    client: Client,
    base_dir: Path,
    registry: ManifestRegistry,
    *,
    pool: str,
    output_store: str,
    download_mode: str = "presigned",
) -> AsyncIterator[StoreStack]:
    api_data_dir = base_dir / "api-host"
    gpu_data_dir = base_dir / "gpu-host"
    name = f"store-gpu-{uuid.uuid4().hex[:6]}"
    # Every attempt really runs in ComfyUI (no cache), as a retried job on another host would.
    comfyui = emulator_process(
        gpu_data_dir / "comfyui", name=f"emulator:{name}", extra_args=["--cache-none"]
    )
    gpu = GpuWorker(
        client,
        comfyui,
        GpuWorkerSettings(name=name, pool=pool, data_dir=gpu_data_dir, output_store=output_store),
    )
    stop = asyncio.Event()
    gpu_run = asyncio.create_task(gpu.run(stop), name=name)
    app = create_app(
        Settings(
            data_dir=api_data_dir,
            output_store=output_store,
            download_mode=download_mode,  # type: ignore[arg-type]
            embedded_control_worker=True,
        ),
        temporal_client=client,
        registry=registry,
    )
    try:
        async with serve_in_background(app) as url:
            polling = asyncio.create_task(gpu.polling.wait())
            await asyncio.wait(
                {polling, gpu_run}, timeout=READY_SECONDS, return_when="FIRST_COMPLETED"
            )
            if gpu_run.done():
                gpu_run.result()  # raises why the worker stopped
            if not polling.done():
                polling.cancel()
                raise TimeoutError(f"the GPU worker did not poll within {READY_SECONDS} s")
            yield StoreStack(url, api_data_dir, gpu_data_dir, comfyui.output_dir)
    finally:
        stop.set()
        await gpu_run
