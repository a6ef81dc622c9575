"""The API's Prometheus metrics: requests by route template and status, each GPU pool's backlog
read from Temporal when scraped, and `GET /metrics`, which also serves whatever else the process
registered (an embedded control worker's job counts, the Temporal SDK's metrics).

The backlog comes from Temporal's task-queue statistics, so it is right after any restart; every
other number counts from this process's start, as Prometheus counters do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client
from temporalio.runtime import Runtime

from api.async_manifests import AsyncManifestRegistry
from api.tasks.queues import queue_backlog
from temporal_workflows.names import pool_task_queue

log = logging.getLogger(__name__)

# A scrape waits at most this long for Temporal's queue statistics; pools not answered in time
# are left out of that scrape rather than shown with an old value.
BACKLOG_TIMEOUT = 5.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Requests that match no route share one label value, so probing URLs cannot grow the series.
UNMATCHED_ROUTE = "unmatched"


class ApiMetrics:
    """The API process's registry and the metrics the API itself keeps."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "comfy_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "comfy_http_request_duration_seconds",
            "Seconds to answer an HTTP request (to its last byte; event streams: their life).",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.backlog = Gauge(
            "comfy_backlog",
            "Jobs waiting for a GPU on each pool's queue (Temporal's approximate backlog count;"
            " jobs pinned to one worker wait on that worker's queue and are not included).",
            ["pool"],
            registry=self.registry,
        )
        self._backlog_pools: set[str] = set()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.request_seconds.labels(*labels).observe(seconds)

    async def refresh_backlog(self, client: Client | None, pools: set[str]) -> None:
        """Read every pool's backlog from Temporal now; a pool that did not answer is dropped."""
        answered: dict[str, int] = {}
        if client is not None and pools:
            ordered = sorted(pools)
            try:
                async with asyncio.timeout(BACKLOG_TIMEOUT):
                    results = await asyncio.gather(
                        *(queue_backlog(client, pool_task_queue(p)) for p in ordered),
                        return_exceptions=True,
                    )
            except TimeoutError:
                log.warning("backlog not read: Temporal did not answer in %g s", BACKLOG_TIMEOUT)
                results = []
            for pool, result in zip(ordered, results, strict=False):
                if isinstance(result, BaseException):
                    log.warning("backlog of pool %s not read: %s", pool, result)
                else:
                    answered[pool] = result
        for gone in self._backlog_pools - answered.keys():
            self.backlog.remove(gone)
        for pool, count in answered.items():
            self.backlog.labels(pool).set(count)
        self._backlog_pools = set(answered)


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by its route template (`/tasks/{task_id}`, not the id),
    outermost so that refusals by other middleware (413) are counted too."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before it answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router writes the matched route into the scope (FastAPI's APIRoute.matches).
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.metrics.observe_request(
                scope["method"], route, status, time.perf_counter() - started
            )


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics of this API process",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text format 0.0.4."}},
)
async def metrics(request: Request) -> Response:
    """Every metric of this process in Prometheus' text format: HTTP requests, each GPU pool's
    backlog, and with an embedded control worker its job outcomes and webhook deliveries; see
    docs/operating.md for the list. Needs an API key like the other routes when keys are on."""
    api_metrics: ApiMetrics = request.app.state.metrics
    manifests: AsyncManifestRegistry = request.app.state.manifests
    client: Client | None = getattr(request.app.state, "temporal", None)
    snapshot = await manifests.snapshot()
    await api_metrics.refresh_backlog(client, {m.pool for m in snapshot.workflows.values()})
    # Collecting may call the Temporal SDK's exporter over loopback: keep it off the event loop.
    body: Any = await asyncio.to_thread(generate_latest, api_metrics.registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)


def api_metrics_with_sdk(process: str) -> tuple[ApiMetrics, Runtime]:
    """ApiMetrics whose registry also carries the Temporal SDK's metrics of this process, labelled
    `process=<process>`; connect the process's Temporal client with the returned runtime."""
    from activities.workers.metrics_server import TemporalSdkMetrics

    sdk = TemporalSdkMetrics(process)
    registry = CollectorRegistry()
    registry.register(sdk)
    return ApiMetrics(registry), sdk.runtime
