"""Builds the FastAPI app: routers, error handler, Temporal client, optional control worker.

The API is thin: it validates against the manifests, starts / describes / cancels GenerationWorkflow
executions, and serves files from the output store (or links to it). It never talks to ComfyUI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client

from activities.generation.routing import INVENTORY_FRESH_SECONDS, Router
from activities.io.output_store import open_output_store
from activities.workers.inventory import InventoryCache
from api.api_keys import ApiKeys
from api.async_manifests import AsyncManifestRegistry
from api.body_limit import BodySizeLimit
from api.body_text import BodyTextCheck
from api.contract.signed_urls import UrlSigner, load_signing_key
from api.deps import require_api_key
from api.docs_assets import install_docs
from api.errors import install_error_handlers
from api.metrics import ApiMetrics, HttpMetricsMiddleware
from api.metrics import router as metrics_router
from api.openapi import OpenAPICache
from api.page_tokens import PageTokens
from api.routes import (
    batches,
    generate,
    health,
    loras,
    outputs,
    schedules,
    task_events,
    tasks,
    workflows,
)
from api.settings import Settings
from manifests.registry import ManifestRegistry

if TYPE_CHECKING:
    from activities.generation.admission import PoolAdmission
    from activities.workers.tracing import Tracing

log = logging.getLogger("api")

DESCRIPTION = """\
Run ComfyUI workflows behind a typed REST API, orchestrated by Temporal.

`POST /generate` with a `workflow_id` and its `params` (each workflow's parameters are below, under
the request body's schema) returns a `task_id`, which is the Temporal workflow id. Poll
`GET /tasks/{task_id}` until `status` is `SUCCESS` (then `result.download_url`) or `FAILURE`.

When API keys are configured, send one as `Authorization: Bearer <key>` or `X-API-Key: <key>`
(everything except /health, /ping, the /ready probes and these docs). Download URLs in task
results are signed and expire, so they work without a key. Request bodies over the configured
limit get 413.
"""


async def connect(settings: Settings) -> Client:
    """The Temporal client: envconfig (TEMPORAL_ADDRESS, ...) with the settings' overrides."""
    from activities.workers.temporal_client import connect_temporal

    return await connect_temporal(settings.temporal_address, settings.temporal_namespace)


@contextlib.asynccontextmanager
async def embedded_control_worker(
    client: Client,
    registry: ManifestRegistry,
    url_signer: UrlSigner,
    settings: Settings,
    metrics: ApiMetrics,
    admission: PoolAdmission,
    router: Router,
) -> AsyncIterator[None]:
    """Runs the control worker (GenerationWorkflow, prepare) in this process until the app stops;
    webhooks carry download URLs signed with this API's key; its metrics join the API's, and a
    schedule's runs are admitted by the API's own admission control."""
    from activities.generation.webhooks import WebhookActivities
    from activities.workers.control import run_control_worker
    from activities.workers.metrics import ControlWorkerMetrics

    stop = asyncio.Event()
    task = asyncio.create_task(
        run_control_worker(
            client,
            registry,
            stop=stop,
            identity=f"api-{os.getpid()}@{_host()}",
            admission=admission,
            webhooks=WebhookActivities(
                settings.webhook_secret,
                allow_private=settings.allow_private_callback_urls,
                url_signer=url_signer,
            ),
            metrics=ControlWorkerMetrics(metrics.registry),
            routing=router,
        ),
        name="control-worker",
    )
    try:
        yield
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=30)
        except Exception:  # a worker that fails to stop must not keep the API from exiting
            log.exception("control worker did not stop cleanly")
            task.cancel()


def _host() -> str:
    return socket.gethostname()


def create_app(
    settings: Settings,
    *,
    temporal_client: Client | None = None,
    registry: ManifestRegistry | None = None,
    metrics: ApiMetrics | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The app; `temporal_client` / `registry` / `metrics` replace the ones built from
    `settings` (give `metrics` a registry that holds the process's other collectors). With
    `tracing`, every request gets a span; give `temporal_client` its interceptor so that the jobs
    started join the request's trace."""
    manifests = AsyncManifestRegistry(
        registry
        or ManifestRegistry(
            settings.manifests_dir,
            settings.workflows_dir,
            experimental=settings.experimental_workflows,
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from activities.generation.admission import PoolAdmission

        client = temporal_client or await connect(settings)
        app.state.temporal = client
        app.state.admission = PoolAdmission.from_settings(client, settings)
        async with contextlib.AsyncExitStack() as stack:
            if settings.embedded_control_worker:
                await stack.enter_async_context(
                    embedded_control_worker(
                        client,
                        manifests.registry,
                        app.state.url_signer,
                        settings,
                        app.state.metrics,
                        app.state.admission,
                        app.state.router,
                    )
                )
            yield

    app = FastAPI(
        title="comfy-temporal",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url=None,  # served below, rebuilt per manifest revision
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.manifests = manifests
    app.state.temporal = temporal_client
    app.state.api_keys = ApiKeys(settings.api_keys)
    store = open_output_store(settings.output_store, settings.data_dir)
    app.state.output_store = store
    signing_key = load_signing_key(settings.data_dir, settings.url_signing_key)
    app.state.url_signer = UrlSigner(
        signing_key,
        settings.download_url_ttl_seconds,
        # Presigned store URLs, unless clients cannot reach the store (the API proxies then).
        store_links=store if settings.download_mode == "presigned" else None,
    )
    app.state.page_tokens = PageTokens(signing_key)
    app.state.metrics = metrics or ApiMetrics()
    # One cache of each pool's inventory, for name checks and routing alike.
    app.state.inventory = InventoryCache(INVENTORY_FRESH_SECONDS)
    app.state.router = Router(settings, inventories=app.state.inventory)
    install_error_handlers(app)
    # The last added runs first: the size limit, then the text of what is left.
    app.add_middleware(BodyTextCheck)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.metrics)
    if tracing is not None:
        from api.tracing import HttpTracingMiddleware

        app.add_middleware(HttpTracingMiddleware, tracer=tracing.tracer)  # outermost
    # Liveness/readiness probes and the docs stay open; outputs check a key or a signature.
    app.include_router(health.router)
    app.include_router(outputs.router)
    keyed = [Depends(require_api_key)]
    for router in (
        generate.router,
        batches.router,
        tasks.router,
        workflows.router,
        loras.router,
        schedules.router,
        task_events.router,
        metrics_router,
    ):
        app.include_router(router, dependencies=keyed)

    cache = OpenAPICache()

    def openapi_sync() -> dict[str, Any]:
        return cache.document(app, manifests.registry.snapshot())

    app.openapi = openapi_sync  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        snapshot = await manifests.snapshot()
        return JSONResponse(cache.document(app, snapshot))

    install_docs(app, openapi_url="/openapi.json")
    return app
