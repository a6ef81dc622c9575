"""The GPU worker: one warm ComfyUI per GPU, polling Temporal only while that ComfyUI is healthy.

It runs two Temporal Workers with `execute_prompt`: one on the pool queue (`comfy-gpu-<pool>`,
load balancing across GPUs) and one on its own queue (`comfy-gpu-<pool>.<name>`, pinned jobs).
A Temporal Worker cannot be restarted, so each healthy period of ComfyUI gets new Workers.

Prefetch: the pool Worker may hold a second job only while its first is running, and queues that
prompt in ComfyUI, so the GPU starts the next job the instant the current one ends. An idle worker
holds a single poll, and Temporal hands a task to the longest-waiting poll (the server's matcher
orders waiting pollers by poll start time, service/matching matcher_data.go `pollerPQ`); a busy
worker's prefetch poll starts only once its job started, so a GPU that was already idle gets the
next job first. A poll is renewed every minute (matching.longPollExpirationInterval), which can
reorder them; the effect is then one job waiting behind another on a busy GPU, never a lost job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry
from temporalio.client import Client
from temporalio.worker import FixedSizeSlotSupplier, Worker, WorkerTuner

from activities.comfyui.client import ComfyUIClient
from activities.generation.execute import ExecuteActivities
from activities.io.output_store import OutputStore
from activities.workers.inventory import INVENTORY_INTERVAL, InventoryReporter
from activities.workers.metrics import GpuWorkerMetrics
from activities.workers.prefetch_slots import PrefetchSlotSupplier
from manifests.definitions import DEFAULT_POOL
from temporal_workflows.names import CONTROL_TASK_QUEUE, pool_task_queue, worker_task_queue

logger = logging.getLogger(__name__)

# Heartbeats reach Temporal at most this long after `activity.heartbeat`: progress shows within
# ~1 s through `describe`, and a cancel (delivered in a heartbeat's answer) reaches ComfyUI as fast.
HEARTBEAT_THROTTLE = timedelta(milliseconds=500)


def default_worker_name(gpu: int | None) -> str:
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-gpu{gpu}" if gpu is not None else f"{host}-comfyui"


class ComfyUISupervisor(Protocol):
    """What the worker needs from ComfyUIProcess / ComfyUIAttached."""

    @property
    def url(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    async def wait_healthy(self, timeout: float | None = None) -> None: ...
    async def wait_unhealthy(self) -> None: ...
    async def supervise(self) -> None: ...
    async def restart(self, reason: str) -> None: ...
    async def stop(self, grace: float = 10.0) -> None: ...


@dataclass
class GpuWorkerSettings:
    """How one GPU worker identifies itself and behaves."""

    name: str
    pool: str = DEFAULT_POOL
    data_dir: Path = Path("data")
    prefetch: bool = True
    # Pinned jobs also queue in ComfyUI; two lets one wait there while another runs.
    pinned_slots: int = 2
    # On SIGTERM, running jobs get this long to finish before they are cancelled (and retried
    # elsewhere); prefetched jobs still waiting in ComfyUI's queue are handed back at once.
    shutdown_grace: timedelta = timedelta(minutes=5)
    heartbeat_throttle: timedelta = HEARTBEAT_THROTTLE
    stall_timeout: float | None = None
    # Model inventory: read from ComfyUI and reported to the pool's PoolInventoryWorkflow (on the
    # control queue) this often (activities/workers/inventory.py).
    inventory_interval: timedelta = INVENTORY_INTERVAL
    control_queue: str = CONTROL_TASK_QUEUE

    @property
    def pool_queue(self) -> str:
        return pool_task_queue(self.pool)

    @property
    def own_queue(self) -> str:
        return worker_task_queue(self.pool, self.name)


class GpuWorker:
    """Runs one ComfyUI (or attaches to one) and serves `execute_prompt` while it is healthy."""

    def __init__(
        self,
        client: Client,
        comfyui: ComfyUISupervisor,
        settings: GpuWorkerSettings,
        *,
        metrics: GpuWorkerMetrics | None = None,
    ) -> None:
        self.client = client
        self.comfyui = comfyui
        self.settings = settings
        # Always measured; the process serves them only with --metrics-port.
        self.metrics = metrics or GpuWorkerMetrics(
            settings.name, settings.pool, CollectorRegistry()
        )
        self.metrics.watch_comfyui(comfyui)
        self.store = OutputStore(settings.data_dir)
        self.polling = asyncio.Event()  # set while Workers poll; for readiness checks and tests
        self.pool_slots: PrefetchSlotSupplier | None = None
        self.inventory: InventoryReporter | None = None  # while ComfyUI is healthy

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: supervise ComfyUI and poll while it is healthy. Then finish
        running jobs (up to `shutdown_grace`) and stop ComfyUI."""
        supervisor = asyncio.create_task(self.comfyui.supervise(), name="comfyui supervisor")
        try:
            async with ComfyUIClient(self.comfyui.url) as comfy:
                activities = ExecuteActivities(
                    comfy,
                    self.store,
                    self.settings.name,
                    stall_timeout=self.settings.stall_timeout,
                    restart_comfyui=self.comfyui.restart,
                )
                while not stop.is_set():
                    await _first(self.comfyui.wait_healthy(), stop.wait(), supervisor)
                    if supervisor.done():
                        supervisor.result()  # a supervisor crash is fatal: raise it
                    if stop.is_set():
                        break
                    await self._poll_while_healthy(comfy, activities, stop, supervisor)
        finally:
            self.polling.clear()
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            await self.comfyui.stop()

    async def _poll_while_healthy(
        self,
        comfy: ComfyUIClient,
        activities: ExecuteActivities,
        stop: asyncio.Event,
        supervisor: asyncio.Task,
    ) -> None:
        workers = self._build_workers(activities)
        runs = [asyncio.create_task(w.run(), name=f"worker {w.task_queue}") for w in workers]
        inventory = self.inventory = InventoryReporter(
            self.client,
            comfy,
            pool=self.settings.pool,
            worker=self.settings.name,
            control_queue=self.settings.control_queue,
            interval=self.settings.inventory_interval,
        )
        reporting = asyncio.create_task(inventory.run(), name="inventory reporter")
        logger.info(
            "%s: ComfyUI healthy at %s; polling %s",
            self.settings.name,
            self.comfyui.url,
            ", ".join(w.task_queue for w in workers),
        )
        self.polling.set()
        try:
            await _first(self.comfyui.wait_unhealthy(), stop.wait(), supervisor, *runs)
        finally:
            self.polling.clear()
            unhealthy = not stop.is_set() and not self.comfyui.healthy
            if unhealthy:
                logger.warning("%s: ComfyUI unhealthy; stopped polling", self.settings.name)
            reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporting
            self.inventory = None
            # Withdrawn while the Workers drain (which may take the whole grace): the API stops
            # accepting names only this worker has at once.
            withdrawn = inventory.withdraw("ComfyUI unhealthy" if unhealthy else "stopping")
            await asyncio.gather(
                withdrawn, *(w.shutdown() for w in workers), return_exceptions=True
            )
            results = await asyncio.gather(*runs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    def _build_workers(self, activities: ExecuteActivities) -> list[Worker]:
        settings = self.settings
        common = dict(
            activities=[activities.execute_prompt],
            identity=settings.name,
            max_heartbeat_throttle_interval=settings.heartbeat_throttle,
            default_heartbeat_throttle_interval=settings.heartbeat_throttle,
            graceful_shutdown_timeout=settings.shutdown_grace,
            interceptors=[self.metrics.interceptor()],
        )
        pool_slots = PrefetchSlotSupplier(max_slots=2 if settings.prefetch else 1)
        self.pool_slots = pool_slots
        pool_worker = Worker(
            self.client,
            task_queue=settings.pool_queue,
            tuner=WorkerTuner.create_composite(
                workflow_supplier=FixedSizeSlotSupplier(1),
                activity_supplier=pool_slots,
                local_activity_supplier=FixedSizeSlotSupplier(1),
                nexus_supplier=FixedSizeSlotSupplier(1),
            ),
            **common,  # type: ignore[arg-type]
        )
        own_worker = Worker(
            self.client,
            task_queue=settings.own_queue,
            max_concurrent_activities=settings.pinned_slots,
            **common,  # type: ignore[arg-type]
        )
        return [pool_worker, own_worker]


async def _first(*aws: Awaitable) -> None:
    """Wait until the first of these finishes; cancel the coroutines among the rest (tasks passed
    in are left running: they belong to the caller)."""
    tasks = []
    owned = []
    for aw in aws:
        if isinstance(aw, asyncio.Future):
            tasks.append(aw)
        else:
            task = asyncio.ensure_future(aw)
            owned.append(task)
            tasks.append(task)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in owned:
            task.cancel()
        for task in owned:
            with contextlib.suppress(BaseException):
                await task
