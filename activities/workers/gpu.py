"""The GPU worker: one warm ComfyUI per GPU, polling Temporal only while that ComfyUI is healthy.

It runs two Temporal Workers with `execute_prompt`: one on the pool queue (`comfy-gpu-<pool>`,
load balancing across GPUs) and one on its own queue (`comfy-gpu-<pool>.<name>`, pinned jobs and
jobs routed to it for the models it holds, docs/routing.md). Both count the GPU's jobs together
(prefetch_slots.py), so a routed job waits in Temporal, not in ComfyUI, while this GPU is full.
A Temporal Worker cannot be restarted, so each healthy period of ComfyUI gets new Workers.

Prefetch: the pool Worker may hold another job only while every job it holds has one, and queues
that prompt in ComfyUI, so the GPU starts the next job the instant the current one ends; one such
prompt, or up to three when the recent jobs are shorter than a hand-over between two jobs
(`PrefetchDepth`). An idle worker holds a single poll, and Temporal hands a task to the
longest-waiting poll (the server's matcher orders waiting pollers by poll start time,
service/matching matcher_data.go `pollerPQ`); a busy worker's prefetch poll starts only once its
jobs have started, so a GPU that was already idle gets the next job first. A poll is renewed
every minute (matching.longPollExpirationInterval), which can reorder them; the effect is then
one job waiting behind another on a busy GPU, never a lost job.

Recycling (recycling.py): when a job ends and ComfyUI has passed a limit of the worker's
RecyclePolicy, the worker stops polling (the pool's jobs go to other GPUs), lets the jobs it holds
finish (a prefetched prompt already queued in ComfyUI runs here rather than being handed back, so
no attempt is spent), then restarts ComfyUI and polls again once it is healthy.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry
from temporalio.client import Client
from temporalio.worker import FixedSizeSlotSupplier, Worker, WorkerTuner

from activities.comfyui.client import ComfyUIClient
from activities.generation.execute import ExecuteActivities
from activities.io.output_store import open_output_store
from activities.models.download import ModelCredentials
from activities.models.inventory import model_files
from activities.models.store import ModelStore
from activities.workers.inventory import INVENTORY_INTERVAL, InventoryReporter
from activities.workers.loaded_models import DEFAULT_MODEL_SETS_KEPT, LoadedModels
from activities.workers.metrics import GpuWorkerMetrics
from activities.workers.prefetch_slots import GpuOccupancy, PrefetchDepth, PrefetchSlotSupplier
from activities.workers.recycling import RecycleCheck, RecyclePolicy, RecycleReason
from activities.workers.settings import (
    DEFAULT_MAX_MODEL_GB,
    DEFAULT_MODEL_CACHE_GB,
    ImageInputSettings,
    ModelSettings,
)
from manifests.definitions import DEFAULT_POOL
from temporal_workflows.inventory import IDLE_AFTER_SECONDS
from temporal_workflows.names import CONTROL_TASK_QUEUE, pool_task_queue, worker_task_queue

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

logger = logging.getLogger(__name__)

# Heartbeats reach Temporal at most this long after `activity.heartbeat`: progress shows within
# ~1 s through `describe`, and a cancel (delivered in a heartbeat's answer) reaches ComfyUI as fast.
HEARTBEAT_THROTTLE = timedelta(milliseconds=500)


def default_worker_name(gpu: int | None) -> str:
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-gpu{gpu}" if gpu is not None else f"{host}-comfyui"


class ComfyUISupervisor(Protocol):
    """What the worker needs from ComfyUIProcess / ComfyUIAttached."""

    restartable: bool

    @property
    def url(self) -> str: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def pid(self) -> int | None: ...
    async def wait_healthy(self, timeout: float | None = None) -> None: ...
    async def wait_unhealthy(self) -> None: ...
    async def supervise(self) -> None: ...
    async def restart(self, reason: str) -> None: ...
    async def recycle(self, reason: str, restart_reason: str, grace: float = 10.0) -> None: ...
    async def stop(self, grace: float = 10.0) -> None: ...


@dataclass
class GpuWorkerSettings:
    """How one GPU worker identifies itself and behaves."""

    name: str
    pool: str = DEFAULT_POOL
    data_dir: Path = Path("data")
    # --output-store: None = <data-dir>; a path, file:// URL or s3://bucket/prefix.
    output_store: str | None = None
    # A second job (from either queue) waits in ComfyUI's queue while one runs.
    prefetch: bool = True
    # How many prompts' model sets its ComfyUI keeps loaded (loaded_models.py): 1 with
    # ComfyUI's default cache (comfyui-protocol.md §4.12).
    model_sets_kept: int = DEFAULT_MODEL_SETS_KEPT
    # On SIGTERM, running jobs get this long to finish before they are cancelled (and retried
    # elsewhere); prefetched jobs still waiting in ComfyUI's queue are handed back at once.
    shutdown_grace: timedelta = timedelta(minutes=5)
    heartbeat_throttle: timedelta = HEARTBEAT_THROTTLE
    stall_timeout: float | None = None
    # Model inventory: read from ComfyUI and reported to the pool's PoolInventoryWorkflow (on the
    # control queue) this often (activities/workers/inventory.py).
    inventory_interval: timedelta = INVENTORY_INTERVAL
    control_queue: str = CONTROL_TASK_QUEUE
    # Model files by URL go to <models_dir>/<folder>/ (a directory its ComfyUI reads); None:
    # the worker refuses them. `comfyui_models_dir` is the install's own, for the inventory.
    models_dir: Path | None = None
    comfyui_models_dir: Path | None = None
    model_cache_bytes: int = int(DEFAULT_MODEL_CACHE_GB * 1e9)
    max_model_bytes: int = int(DEFAULT_MAX_MODEL_GB * 1e9)
    # None: from the environment (COMFY_ALLOW_PRIVATE_IMAGE_URLS, HF_TOKEN, COMFY_MODEL_TOKENS).
    allow_private_urls: bool | None = None
    model_credentials: ModelCredentials | None = None
    # Restart ComfyUI between jobs past these limits (default: never).
    recycle: RecyclePolicy = field(default_factory=RecyclePolicy)

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
        tracer: Tracer | None = None,
    ) -> None:
        """`tracer` (traces on) records a span per ComfyUI node; the spans of the activity
        itself come from the tracing interceptor on `client`."""
        self.client = client
        self.tracer = tracer
        self.comfyui = comfyui
        self.settings = settings
        # Always measured; the process serves them only with --metrics-port.
        self.metrics = metrics or GpuWorkerMetrics(
            settings.name, settings.pool, CollectorRegistry()
        )
        self.metrics.watch_comfyui(comfyui)
        self.store = open_output_store(settings.output_store, settings.data_dir)
        self.models = _model_store(settings)
        self.polling = asyncio.Event()  # set while Workers poll; for readiness checks and tests
        self.pool_slots: PrefetchSlotSupplier | None = None
        self.inventory: InventoryReporter | None = None  # while ComfyUI is healthy
        self.loaded_models = LoadedModels(settings.model_sets_kept)
        # ComfyUI restarts between jobs, by reason kind ("rss", "vram", "jobs").
        self.recycles: collections.Counter[str] = collections.Counter()
        self._recycle_check = RecycleCheck(settings.recycle)
        # Reporting the GPU idle (routing reads it): pending while it has held no job for less
        # than IDLE_AFTER_SECONDS.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._recycle_due: RecycleReason | None = None
        self._recycle_wanted = asyncio.Event()
        self._measuring: asyncio.Task[None] | None = None
        # Recent jobs' durations, kept across ComfyUI restarts (the Workers are rebuilt).
        self.prefetch_depth = PrefetchDepth() if settings.prefetch else None

    @property
    def recycling(self) -> bool:
        """Whether this worker restarts its ComfyUI between jobs past the policy's limits."""
        return self.settings.recycle.enabled and self.comfyui.restartable

    def model_files(self) -> dict[str, list[str]]:
        """The model files on this worker's disk, per loader folder (checkpoints, loras, ...):
        its ComfyUI install's and those it downloaded. Walks the directories: call it off the
        event loop (asyncio.to_thread) where they may be large."""
        roots = [self.settings.comfyui_models_dir, self.settings.models_dir]
        return model_files(root for root in roots if root is not None)

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
                    models=self.models,
                    on_job_end=(lambda: self._job_ended(comfy)) if self.recycling else None,
                    tracer=self.tracer,
                    record_execution=self.prefetch_depth.record if self.prefetch_depth else None,
                    submitted=self._submitted,
                    models_dropped=self.loaded_models.clear,
                    gpu_full=self._gpu_full,
                )
                while not stop.is_set():
                    await _first(self.comfyui.wait_healthy(), stop.wait(), supervisor)
                    if supervisor.done():
                        supervisor.result()  # a supervisor crash is fatal: raise it
                    if stop.is_set():
                        break
                    drained = await self._poll_while_healthy(comfy, activities, stop, supervisor)
                    reason, self._recycle_due = self._recycle_due, None
                    self._recycle_wanted.clear()
                    if reason is not None and drained and not stop.is_set():
                        await self._recycle(reason)
                    elif reason is not None:
                        # ComfyUI went down meanwhile and the supervisor starts a fresh one.
                        self._recycle_check.started()
        finally:
            self.polling.clear()
            if self._measuring is not None:
                self._measuring.cancel()
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            await self.comfyui.stop()

    def _job_ended(self, comfy: ComfyUIClient) -> None:
        """A job ended: count it and, unless a measure runs already, measure ComfyUI."""
        self._recycle_check.job_ended()
        if self._recycle_due is None and (self._measuring is None or self._measuring.done()):
            self._measuring = asyncio.create_task(self._measure(comfy), name="recycle check")

    async def _measure(self, comfy: ComfyUIClient) -> None:
        try:
            reason = await self._recycle_check.reason(self.comfyui.pid, comfy)
        except Exception:  # a failed measure must never stop the worker
            logger.exception("%s: measuring ComfyUI failed", self.settings.name)
            return
        if reason is not None and self._recycle_due is None:
            self._recycle_due = reason
            self._recycle_wanted.set()

    async def _recycle(self, reason: RecycleReason) -> None:
        """Restart ComfyUI (nothing runs on it any more); polling resumes once it is healthy."""
        self.recycles[reason.kind] += 1
        logger.warning(
            "%s: recycling ComfyUI (%s): %s", self.settings.name, reason.kind, reason.text
        )
        try:
            await self.comfyui.recycle(reason.text, reason.restart_reason)
        finally:
            self._recycle_check.started()

    async def _poll_while_healthy(
        self,
        comfy: ComfyUIClient,
        activities: ExecuteActivities,
        stop: asyncio.Event,
        supervisor: asyncio.Task[None],
    ) -> bool:
        """Poll until ComfyUI is unhealthy, `stop` is set or a recycle is due; True when it
        stopped for a recycle and every job it held has ended."""
        workers = self._build_workers(activities)
        runs = [asyncio.create_task(w.run(), name=f"worker {w.task_queue}") for w in workers]
        self.loaded_models.clear()  # a ComfyUI that (re)started holds no model
        inventory = self.inventory = InventoryReporter(
            self.client,
            comfy,
            pool=self.settings.pool,
            worker=self.settings.name,
            control_queue=self.settings.control_queue,
            interval=self.settings.inventory_interval,
            loaded=self.loaded_models,
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
            await _first(
                self.comfyui.wait_unhealthy(),
                stop.wait(),
                self._recycle_wanted.wait(),
                supervisor,
                *runs,
            )
        finally:
            self.polling.clear()
            unhealthy = not stop.is_set() and not self.comfyui.healthy
            draining = self._recycle_due is not None and not stop.is_set() and not unhealthy
            if unhealthy:
                logger.warning("%s: ComfyUI unhealthy; stopped polling", self.settings.name)
            elif draining:
                logger.info(
                    "%s: stopped polling to recycle ComfyUI; finishing the jobs it holds",
                    self.settings.name,
                )
                activities.hand_back_on_shutdown = False
            reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporting
            self.inventory = None
            # Withdrawn while the Workers drain (which may take the whole grace): the API stops
            # accepting names only this worker has at once. Not for a recycle: the same ComfyUI
            # install is back within seconds, and jobs naming its models may wait for it.
            why = "ComfyUI unhealthy" if unhealthy else "stopping"
            withdrawn = [] if draining else [inventory.withdraw(why)]
            shutdowns = asyncio.gather(
                *withdrawn, *(w.shutdown() for w in workers), return_exceptions=True
            )
            if draining:
                # A SIGTERM meanwhile is a shutdown again: unstarted prompts go back at once.
                await _first(shutdowns, stop.wait())
                activities.hand_back_on_shutdown = True
            await shutdowns
            results = await asyncio.gather(*runs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        return draining and not stop.is_set() and self.comfyui.healthy

    def _occupancy_changed(self, jobs: int) -> None:
        """The GPU's job count changed (on any thread, under the slots' lock): hand it over."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop closed: the worker has stopped
                loop.call_soon_threadsafe(self._gpu_jobs_changed, jobs)

    def _gpu_jobs_changed(self, jobs: int) -> None:
        """Report the GPU busy at once, and idle once it has held no job for a moment (a GPU
        between two jobs of a backlog is not idle)."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if jobs > 0:
            if self.inventory is not None:
                self.inventory.set_idle(False)
        elif self._loop is not None:
            self._idle_timer = self._loop.call_later(IDLE_AFTER_SECONDS, self._gpu_went_idle)

    def _gpu_went_idle(self) -> None:
        self._idle_timer = None
        slots = self.pool_slots
        if self.inventory is not None and (slots is None or slots.occupancy.used == 0):
            self.inventory.set_idle(True)

    def _gpu_full(self) -> bool:
        slots = self.pool_slots
        return slots is not None and slots.occupancy.used > slots.max_slots

    def _submitted(self, prompt: dict[str, Any]) -> None:
        """ComfyUI got this prompt: its models are (about to be) loaded there."""
        loaders = self.inventory.loaders if self.inventory is not None else None
        if self.loaded_models.submitted(prompt, loaders):
            self.metrics.model_loads.labels(self.settings.name).inc()

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
        self._loop = asyncio.get_running_loop()
        occupancy = GpuOccupancy(changed=self._occupancy_changed)
        pool_slots = (
            PrefetchSlotSupplier(depth=self.prefetch_depth, occupancy=occupancy)
            if self.prefetch_depth is not None
            else PrefetchSlotSupplier(max_slots=1, occupancy=occupancy)
        )
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
            tuner=WorkerTuner.create_composite(
                workflow_supplier=FixedSizeSlotSupplier(1),
                activity_supplier=PrefetchSlotSupplier(
                    max_slots=pool_slots.max_slots, depth=self.prefetch_depth, occupancy=occupancy
                ),
                local_activity_supplier=FixedSizeSlotSupplier(1),
                nexus_supplier=FixedSizeSlotSupplier(1),
            ),
            **common,  # type: ignore[arg-type]
        )
        return [pool_worker, own_worker]


def _model_store(settings: GpuWorkerSettings) -> ModelStore | None:
    if settings.models_dir is None:
        return None
    credentials = settings.model_credentials
    if credentials is None:
        configured = ModelSettings()
        credentials = ModelCredentials.parse(configured.hf_token, configured.model_tokens)
    allow_private = settings.allow_private_urls
    if allow_private is None:
        allow_private = ImageInputSettings().allow_private_image_urls
    return ModelStore(
        settings.models_dir,
        cache_bytes=settings.model_cache_bytes,
        max_model_bytes=settings.max_model_bytes,
        allow_private=allow_private,
        credentials=credentials,
    )


async def _first(*aws: Awaitable[object]) -> None:
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
