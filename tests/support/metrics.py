"""The observability suite's stack (the API with its control worker, one GPU worker on an
emulator, each serving /metrics, traces optional), and reading a Prometheus endpoint the way
Prometheus does: scrape over HTTP, parse with prometheus_client's own parser (which fails on
anything malformed), look samples up by labels."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from activities.io.ports import free_port
from activities.workers.gpu import GpuWorker, GpuWorkerSettings
from activities.workers.metrics import GpuWorkerMetrics
from activities.workers.metrics_server import serve_metrics
from activities.workers.temporal_client import connect_temporal
from activities.workers.tracing import Tracing
from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.metrics import api_metrics_with_sdk
from api.settings import Settings
from tests.support.emulator import EmulatorHandle, StartEmulator
from tests.support.loopback_http import serve_on_loopback
from tests.support.manifests import valid_registry, write_sampled_image_manifests
from tests.support.waiting import wait_for
from tests.support.webhooks import WebhookReceiver

METRICS_API_KEY = "metrics-test-key"


@dataclass
class MetricsStack:
    """The metrics suite's API (with its control worker), one GPU worker on a private pool driving
    a ComfyUI emulator, each serving /metrics, and a webhook receiver."""

    api_url: str
    gpu_metrics_url: str
    pool: str
    worker: str
    emulator: EmulatorHandle
    webhooks: WebhookReceiver
    # With traces on: the API's (with its control worker) and the GPU worker's.
    tracings: list[Tracing] = field(default_factory=list)

    async def flush_traces(self) -> None:
        """Until every process exported the spans it ended."""
        for tracing in self.tracings:
            assert await asyncio.to_thread(tracing.force_flush), f"{tracing.process}: not sent"

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers={"X-API-Key": METRICS_API_KEY},
            timeout=30,
            trust_env=False,
        )


class Scrape:
    """Every sample of one scrape; `value(name, **labels)` is the one sample whose labels include
    those given (None when there is none, an error when several match)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def matching(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and _includes(s.labels, labels)]

    def value(self, name: str, **labels: str) -> float | None:
        found = self.matching(name, **labels)
        assert len(found) <= 1, f"{len(found)} samples of {name} match {labels}: {found}"
        return found[0].value if found else None

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.matching(name, **labels))


def _includes(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


async def scrape(url: str, **headers: str) -> Scrape:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        response = await http.get(url, headers=headers)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return Scrape(response.text)


@contextlib.asynccontextmanager
async def observed_stack(
    temporal_address: str,
    start_emulator: StartEmulator,
    tmp_path: Path,
    *,
    otlp_endpoint: str | None = None,
) -> AsyncIterator[MetricsStack]:
    """The API with its embedded control worker and the Temporal SDK's metrics, and one GPU
    worker on a private pool driving a ComfyUI emulator, each serving /metrics; with
    `otlp_endpoint`, each exports its traces there. COMFY_ALLOW_PRIVATE_CALLBACK_URLS must be set
    (the embedded control worker's webhook sender reads it when the API starts)."""
    pool = f"metrics-{uuid.uuid4().hex[:10]}"
    name = f"gpu-metrics-{uuid.uuid4().hex[:6]}"
    api_tracing = gpu_tracing = None
    if otlp_endpoint is not None:
        api_tracing = Tracing(otlp_endpoint, "api")
        gpu_tracing = Tracing(otlp_endpoint, f"gpu-worker:{name}")
    registry = valid_registry(*write_sampled_image_manifests(tmp_path, pool))
    data_dir = tmp_path / "data"
    api_metrics, runtime = api_metrics_with_sdk("api")
    api_client = await connect_temporal(
        temporal_address,
        runtime=runtime,
        interceptors=[api_tracing.interceptor()] if api_tracing else [],
    )
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
        tracing=api_tracing,
    )
    emulator = await start_emulator(name=f"emulator:{name}", extra_args=["--cache-none"])
    gpu_metrics = GpuWorkerMetrics(name, pool, CollectorRegistry())
    endpoint = serve_metrics(gpu_metrics.registry, "127.0.0.1", free_port())
    gpu = GpuWorker(
        await connect_temporal(
            temporal_address, interceptors=[gpu_tracing.interceptor()] if gpu_tracing else []
        ),
        emulator.process,
        GpuWorkerSettings(
            name=name, pool=pool, data_dir=data_dir, shutdown_grace=timedelta(seconds=5)
        ),
        metrics=gpu_metrics,
        tracer=gpu_tracing.tracer if gpu_tracing else None,
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
    tracings = [t for t in (api_tracing, gpu_tracing) if t is not None]
    try:
        async with serve_in_background(app) as api_url, serve_on_loopback(hook_app) as hook_port:
            hook.url = f"http://127.0.0.1:{hook_port}/hook"
            await wait_for(polling, f"GPU worker {name} to poll", 60)
            yield MetricsStack(api_url, endpoint.url, pool, name, emulator, hook, tracings)
    finally:
        stop.set()
        await asyncio.wait_for(gpu_run, 60)
        endpoint.close()
        for tracing in tracings:
            await asyncio.to_thread(tracing.shutdown)
