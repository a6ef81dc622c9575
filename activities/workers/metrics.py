"""Prometheus metrics of the control worker (job outcomes, webhooks) and of a GPU worker (queue
wait, ComfyUI's execution time, ComfyUI's health, restarts, OOMs, GPU memory), observed by
Temporal worker interceptors so that workflow and activity code stay free of them.

Counting each job exactly once: GenerationWorkflow's code is replayed whenever a worker rebuilds a
run from history (cache eviction, another worker, a restart), so a count made in it would repeat.
The control worker's workflow interceptor records a job when the workflow's run function ends
(returned: SUCCESS, raised a Temporal failure: FAILURE, cancelled: CANCELLED, the statuses of
GET /tasks), and only while that code runs for the first time (`workflow.unsafe.is_replaying()`
false; an eviction also counts as replaying). That is the rule of the SDK's own
`workflow.metric_meter()`, which was not used because its metrics live in the SDK runtime: named
with its `temporal_` prefix, with buckets per runtime, and exported only by a process whose runtime
has a Prometheus exporter. Left uncounted or counted twice, both rare: a job ended from outside its
code (`temporal workflow terminate`, an execution timeout: GET /tasks says FAILURE), and a final
workflow task that ran but whose completion never reached Temporal (the worker died in between;
the next worker runs the task again, not as a replay). A job with a webhook is counted once its
delivery ended, since that is when its run ends; its duration still stops when the generation
ended (the status query's `finished_at`).

The GPU worker's activity interceptor observes each attempt of `execute_prompt` it runs: the
wait from Temporal scheduling the attempt to this worker taking it, ComfyUI's own execution time
and each node's time (node_timings.py) of a successful attempt, and out-of-memory failures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from activities.comfyui.process import RESTART_REASONS, ComfyUIProcess
from activities.workers.node_timings import (
    NODE_SECONDS_BUCKETS,
    NODE_SECONDS_HELP,
    NODE_SECONDS_LABELS,
    NODE_SECONDS_METRIC,
    node_seconds,
)
from api.contract.task_schemas import TaskStatusName
from temporal_workflows.failures import ErrorType
from temporal_workflows.names import EXECUTE_ACTIVITY, NOTIFY_ACTIVITY

logger = logging.getLogger(__name__)

# Jobs take seconds to many minutes on a GPU; queue waits range from nothing to hours.
# (prometheus_client adds the +Inf bucket.)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
QUEUE_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1800, 3600)

# Outcome of one webhook POST attempt: accepted (2xx), failed and retried by Temporal (network
# error, 5xx, 408, 429), or refused for good (the receiver's 4xx, a refused callback address).
WEBHOOK_OUTCOMES = ("delivered", "failed", "rejected")

SYSTEM_STATS_TIMEOUT = 2.0


class ControlWorkerMetrics:
    """What the control worker counts: finished jobs by workflow and status, how long they took
    from submission, and webhook delivery attempts by outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.generations = Counter(
            "comfy_generations",
            "Jobs that ended, by workflow and status (as GET /tasks shows it).",
            ["workflow", "status"],
            registry=registry,
        )
        self.generation_seconds = Histogram(
            "comfy_generation_duration_seconds",
            "Seconds from a job's submission to its end (any status).",
            ["workflow"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.webhook_deliveries = Counter(
            "comfy_webhook_deliveries",
            "Webhook POST attempts by outcome: delivered, failed (retried), rejected (given up).",
            ["outcome"],
            registry=registry,
        )
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome)

    def record_generation(self, workflow_id: str, status: TaskStatusName, seconds: float) -> None:
        self.generations.labels(workflow_id, status).inc()
        self.generation_seconds.labels(workflow_id).observe(max(seconds, 0.0))

    def interceptor(self) -> Interceptor:
        """The worker interceptor that feeds these metrics (Worker(interceptors=[...]))."""
        return _ControlWorkerInterceptor(self)


class _ControlWorkerInterceptor(Interceptor):
    def __init__(self, metrics: ControlWorkerMetrics) -> None:
        self.metrics = metrics

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        # The class is handed to the sandbox as is (not imported again in it), so the metrics
        # object it refers to is this process's.
        return type("GenerationOutcomes", (_GenerationOutcomes,), {"metrics": self.metrics})

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _WebhookOutcomes(next, self.metrics)


class _GenerationOutcomes(WorkflowInboundInterceptor):
    metrics: ControlWorkerMetrics

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            result = await super().execute_workflow(input)
        except asyncio.CancelledError:
            self._record(input, "CANCELLED")
            raise
        except FailureError:
            self._record(input, "FAILURE")
            raise
        # Any other exception fails the workflow task, which Temporal retries: not an end.
        self._record(input, "SUCCESS")
        return result

    def _record(self, input: ExecuteWorkflowInput, status: TaskStatusName) -> None:
        if workflow.unsafe.is_replaying():
            return
        request = input.args[0] if input.args else None
        workflow_id = str(getattr(request, "workflow_id", None) or workflow.info().workflow_type)
        with workflow.unsafe.sandbox_unrestricted():
            seconds = (_ended_at() - workflow.info().start_time).total_seconds()
            self.metrics.record_generation(workflow_id, status, seconds)


def _ended_at() -> datetime:
    """When the generation ended: its status's `finished_at` (before any webhook delivery), else
    the time of this workflow task."""
    status_query = getattr(workflow.instance(), "status", None)
    status = status_query() if callable(status_query) else None
    finished = getattr(status, "finished_at", None)
    return finished if isinstance(finished, datetime) else workflow.now()


class _WebhookOutcomes(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: ControlWorkerMetrics) -> None:
        super().__init__(next)
        self.metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        if activity.info().activity_type != NOTIFY_ACTIVITY:
            return await super().execute_activity(input)
        try:
            result = await super().execute_activity(input)
        except ApplicationError as err:
            self._count("rejected" if err.non_retryable else "failed")
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            self._count("failed")
            raise
        self._count("delivered")
        return result

    def _count(self, outcome: str) -> None:
        self.metrics.webhook_deliveries.labels(outcome).inc()


class ComfyUIHealth(Protocol):
    """What the GPU worker metrics read from ComfyUIProcess / ComfyUIAttached."""

    @property
    def url(self) -> str: ...
    @property
    def healthy(self) -> bool: ...


class GpuWorkerMetrics:
    """What one GPU worker measures about its jobs and its ComfyUI."""

    def __init__(self, worker: str, pool: str, registry: CollectorRegistry) -> None:
        self.worker = worker
        self.pool = pool
        self.registry = registry
        self.queue_wait = Histogram(
            "comfy_queue_wait_seconds",
            "Seconds from Temporal scheduling a job's attempt to a GPU worker taking it.",
            ["pool"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.execution_seconds = Histogram(
            "comfy_execution_seconds",
            "ComfyUI's own execution time of a successful job (its execution_start to success).",
            ["workflow", "worker"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.jobs_in_progress = Gauge(
            "comfy_jobs_in_progress",
            "Attempts this GPU worker holds now (running, or prefetched into ComfyUI's queue).",
            ["worker"],
            registry=registry,
        )
        self.model_loads = Counter(
            "comfy_model_loads",
            "Prompts this worker gave its ComfyUI that name a model file it did not hold loaded,"
            " as far as the worker can tell (docs/routing.md): each costs a model load.",
            ["worker"],
            registry=registry,
        )
        self.comfyui_up = Gauge(
            "comfy_comfyui_up",
            "1 while the worker's ComfyUI passes its health checks (the worker polls), else 0.",
            ["worker"],
            registry=registry,
        )
        self.comfyui_restarts = Counter(
            "comfy_comfyui_restarts",
            "Restarts of the worker's ComfyUI by reason: exited, unresponsive, requested, or"
            " recycled_rss / recycled_vram / recycled_jobs (planned, between jobs).",
            ["worker", "reason"],
            registry=registry,
        )
        self.out_of_memory = Counter(
            "comfy_oom",
            "Job attempts that ran out of GPU memory in ComfyUI.",
            ["worker"],
            registry=registry,
        )
        self.node_seconds = Histogram(
            NODE_SECONDS_METRIC,
            NODE_SECONDS_HELP,
            NODE_SECONDS_LABELS,
            buckets=NODE_SECONDS_BUCKETS,
            registry=registry,
        )
        self.jobs_in_progress.labels(worker)
        self.model_loads.labels(worker)
        self.comfyui_up.labels(worker).set(0)
        self.out_of_memory.labels(worker)
        for reason in RESTART_REASONS:
            self.comfyui_restarts.labels(worker, reason)

    def watch_comfyui(self, comfyui: ComfyUIHealth) -> None:
        """Report `comfyui`'s health, restarts (when it supervises a process) and GPU memory."""
        self.comfyui_up.labels(self.worker).set_function(lambda: 1.0 if comfyui.healthy else 0.0)
        if isinstance(comfyui, ComfyUIProcess):  # an attached ComfyUI is not ours to restart
            comfyui.on_restart = self.record_restart
        self.registry.register(SystemStatsCollector(self.worker, lambda: comfyui.url))

    def record_restart(self, reason: str) -> None:
        self.comfyui_restarts.labels(self.worker, reason).inc()

    def interceptor(self) -> Interceptor:
        return _GpuWorkerInterceptor(self)


class _GpuWorkerInterceptor(Interceptor):
    def __init__(self, metrics: GpuWorkerMetrics) -> None:
        self.metrics = metrics

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ExecuteAttempts(next, self.metrics)


class _ExecuteAttempts(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, metrics: GpuWorkerMetrics) -> None:
        super().__init__(next)
        self.metrics = metrics

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.activity_type != EXECUTE_ACTIVITY:
            return await super().execute_activity(input)
        metrics = self.metrics
        waited = (info.started_time - info.current_attempt_scheduled_time).total_seconds()
        metrics.queue_wait.labels(metrics.pool).observe(max(waited, 0.0))
        with metrics.jobs_in_progress.labels(metrics.worker).track_inprogress():
            try:
                result = await super().execute_activity(input)
            except ApplicationError as err:
                if err.type == ErrorType.COMFYUI_OUT_OF_MEMORY:
                    metrics.out_of_memory.labels(metrics.worker).inc()
                raise
        seconds = getattr(result, "comfy_execution_seconds", None)
        if seconds is not None:
            request = input.args[0] if input.args else None
            workflow_id = str(getattr(request, "workflow_id", None) or "unknown")
            metrics.execution_seconds.labels(workflow_id, metrics.worker).observe(seconds)
        for class_type, node_time in node_seconds(result):
            metrics.node_seconds.labels(class_type).observe(node_time)
        return result


class SystemStatsCollector(Collector):
    """GPU memory of the worker's ComfyUI, read from its GET /system_stats at scrape time
    (comfyui-protocol.md: one entry per device, `vram_total` / `vram_free` in bytes). Nothing is
    reported while ComfyUI does not answer."""

    def __init__(self, worker: str, url: Callable[[], str]) -> None:
        self.worker = worker
        self.url = url

    def describe(self) -> list[Metric]:
        return []  # collected only when scraped: no call to ComfyUI at registration

    def collect(self) -> Any:
        total = GaugeMetricFamily(
            "comfy_gpu_memory_total_bytes",
            "Memory of each device ComfyUI uses (GET /system_stats vram_total).",
            labels=["worker", "device"],
        )
        free = GaugeMetricFamily(
            "comfy_gpu_memory_free_bytes",
            "Free memory of each device ComfyUI uses (GET /system_stats vram_free).",
            labels=["worker", "device"],
        )
        for device in self._devices():
            name = str(device.get("name") or device.get("type") or "unknown")
            if isinstance(device.get("vram_total"), int | float):
                total.add_metric([self.worker, name], float(device["vram_total"]))
            if isinstance(device.get("vram_free"), int | float):
                free.add_metric([self.worker, name], float(device["vram_free"]))
        yield total
        yield free

    def _devices(self) -> list[dict[str, Any]]:
        # Scrapes are served from the metrics server's own thread, so a blocking call is fine.
        try:
            response = httpx.get(
                f"{self.url()}/system_stats", timeout=SYSTEM_STATS_TIMEOUT, trust_env=False
            )
            response.raise_for_status()
            devices = response.json().get("devices")
        except (httpx.HTTPError, ValueError, AttributeError) as err:
            logger.debug("%s: no /system_stats for metrics: %s", self.worker, err)
            return []
        return [d for d in devices if isinstance(d, dict)] if isinstance(devices, list) else []
