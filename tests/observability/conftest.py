"""Fixtures of the metrics suite: the API with its embedded control worker and the Temporal SDK's
metrics, and one GPU worker on a private pool driving a ComfyUI emulator, each serving /metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from activities.io.ports import free_port
from activities.workers.gpu import GpuWorker, GpuWorkerSettings
from activities.workers.metrics import GpuWorkerMetrics
from activities.workers.metrics_server import serve_metrics
from activities.workers.temporal_client import connect_temporal
from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.metrics import api_metrics_with_sdk
from api.settings import Settings
from tests.support.emulator import StartEmulator
from tests.support.loopback_http import serve_on_loopback
from tests.support.manifests import valid_registry, write_sampled_image_manifests
from tests.support.metrics import METRICS_API_KEY, MetricsStack
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver


@pytest.fixture
async def metrics_stack(
    temporal_address: str,
    start_emulator: StartEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[MetricsStack]:
    # The embedded control worker's webhook sender reads this when the API starts.
    monkeypatch.setenv("COMFY_ALLOW_PRIVATE_CALLBACK_URLS", "1")
    pool = f"metrics-{uuid.uuid4().hex[:10]}"
    name = f"gpu-metrics-{uuid.uuid4().hex[:6]}"
    registry = valid_registry(*write_sampled_image_manifests(tmp_path, pool))
    data_dir = tmp_path / "data"
    api_metrics, runtime = api_metrics_with_sdk("api")
    api_client = await connect_temporal(temporal_address, runtime=runtime)
    app = create_app(
        Settings(
            data_dir=data_dir,
            embedded_control_worker=True,
            api_keys=(METRICS_API_KEY,),
            allow_private_callback_urls=True,
        ),
        temporal_client=api_client,
        registry=registry,
        metrics=api_metrics,
    )
    emulator = await start_emulator(name=f"emulator:{name}", extra_args=["--cache-none"])
    gpu_metrics = GpuWorkerMetrics(name, pool, CollectorRegistry())
    endpoint = serve_metrics(gpu_metrics.registry, "127.0.0.1", free_port())
    gpu = GpuWorker(
        await connect_temporal(temporal_address),
        emulator.process,
        GpuWorkerSettings(
            name=name, pool=pool, data_dir=data_dir, shutdown_grace=timedelta(seconds=5)
        ),
        metrics=gpu_metrics,
    )
    stop = asyncio.Event()
    gpu_run = asyncio.create_task(gpu.run(stop), name=name)

    async def polling() -> bool:
        if gpu_run.done():
            gpu_run.result()
        return gpu.polling.is_set()

    hook = WebhookReceiver()
    hook_app = web.Application()
    hook_app.router.add_post("/hook", hook.handle)
    try:
        async with serve_in_background(app) as api_url, serve_on_loopback(hook_app) as hook_port:
            hook.url = f"http://127.0.0.1:{hook_port}/hook"
            await wait_for(polling, f"GPU worker {name} to poll", 60)
            yield MetricsStack(api_url, endpoint.url, pool, name, emulator, hook)
    finally:
        stop.set()
        await asyncio.wait_for(gpu_run, 60)
        endpoint.close()
