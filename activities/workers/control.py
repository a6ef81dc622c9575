"""The control worker: GenerationWorkflow and its local activities, and BatchWorkflow with the
activity that starts a batch's items, on the `comfy-control` queue.

The API can embed it in its own process (`run_control_worker`), or it runs alone as
`comfy-temporal control-worker`. It runs its workflows outside the SDK's sandbox; the tests run
GenerationWorkflow inside it (tests/workflows: the replayer over every recorded history, and the
Workers of test_generation_workflow.py), where a non-deterministic call fails. (BatchWorkflow and
PoolInventoryWorkflow have no sandboxed test yet.)
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.generation.admission import AdmissionActivities, PoolAdmission
from activities.generation.batch_items import start_batch_items
from activities.generation.control import request_cancel, update_priority
from activities.generation.prepare import PrepareActivities
from activities.generation.routing import RouteActivities, Router
from activities.generation.webhooks import WebhookActivities
from activities.workers.metrics import ControlWorkerMetrics
from activities.workers.settings import DownloadUrlSettings, RoutingSettings
from api.contract.signed_urls import StoreLinks, UrlSigner, load_signing_key
from manifests.registry import ManifestRegistry
from temporal_workflows.batch import BatchWorkflow
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.names import CONTROL_TASK_QUEUE
from temporal_workflows.pool_inventory import PoolInventoryWorkflow

logger = logging.getLogger(__name__)


def load_url_signer(
    settings: DownloadUrlSettings, *, store_links: StoreLinks | None = None
) -> UrlSigner:
    """The API's signer of download URLs, for a control worker running alone: the key is
    COMFY_URL_SIGNING_KEY, else <data-dir>/url-signing.key (created if missing), exactly as the
    API loads it, so the URLs in webhooks verify at the API. With `store_links` (an object store
    in presigned download mode, as the API has it), files get the store's presigned URLs.
    Raises OSError / ValueError for a data dir it cannot use or a key file without a key."""
    key = load_signing_key(settings.data_dir.resolve(), settings.url_signing_key)
    return UrlSigner(key, settings.download_url_ttl_seconds, store_links=store_links)


def build_control_worker(
    client: Client,
    registry: ManifestRegistry,
    *,
    task_queue: str = CONTROL_TASK_QUEUE,
    identity: str | None = None,
    webhooks: WebhookActivities | None = None,
    metrics: ControlWorkerMetrics | None = None,
    admission: PoolAdmission | None = None,
    routing: RoutingSettings | Router | None = None,
) -> Worker:
    """A Worker for GenerationWorkflow and PoolInventoryWorkflow; use it as `async with` or
    `await worker.run()`.

    `webhooks` signs and sends the `notify` POSTs; by default its secret and address policy come
    from COMFY_WEBHOOK_SECRET and COMFY_ALLOW_PRIVATE_CALLBACK_URLS, and its download URLs are
    unsigned (give it the API's UrlSigner so receivers can follow them without an API key).
    `metrics` counts finished jobs and webhook deliveries.
    `admission` decides whether a schedule's run may queue its job (None: always).
    `routing` chooses GPU queues (default: COMFY_ROUTING and COMFY_AFFINITY_WAIT); give the
    API's Router when it runs in the API's process, so that both know the same model sets.
    """
    extra = {"identity": identity} if identity else {}
    webhooks = webhooks or WebhookActivities()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[GenerationWorkflow, PoolInventoryWorkflow, BatchWorkflow],
        activities=[
            PrepareActivities(registry).prepare_generation,
            AdmissionActivities(admission).check_admission,
            request_cancel,
            update_priority,
            RouteActivities(routing).route_generation,
            webhooks.notify,
            start_batch_items,
        ],
        # start_batch_items learns of a batch's cancel from a heartbeat's answer: heartbeat at
        # least every second, so that it stops starting items within about a second.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        # Workflow tasks and local activities are short; a stuck shutdown only delays exit.
        graceful_shutdown_timeout=timedelta(seconds=10),
        interceptors=[metrics.interceptor()] if metrics is not None else [],
        # The sandbox builds a fresh module namespace for every run and proxies each call: 5.5 ms
        # of CPU a generation on a 61 ms total (replaying its history: 11.2 against 5.6 ms),
        # more than any other single cost of the control worker (docs/api.md#benchmark).
        # GenerationWorkflow keeps its state on the instance, and the tests keep it honest.
        workflow_runner=UnsandboxedWorkflowRunner(),
        **extra,  # type: ignore[arg-type]
    )


async def run_control_worker(
    client: Client,
    registry: ManifestRegistry,
    *,
    stop: asyncio.Event | None = None,
    task_queue: str = CONTROL_TASK_QUEUE,
    identity: str | None = None,
    webhooks: WebhookActivities | None = None,
    metrics: ControlWorkerMetrics | None = None,
    admission: PoolAdmission | None = None,
    routing: RoutingSettings | Router | None = None,
) -> None:
    """Serve the control queue until `stop` is set or this task is cancelled."""
    worker = build_control_worker(
        client,
        registry,
        task_queue=task_queue,
        identity=identity,
        webhooks=webhooks,
        metrics=metrics,
        admission=admission,
        routing=routing,
    )
    logger.info("control worker polling %s", task_queue)
    async with worker:
        await (stop or asyncio.Event()).wait()
