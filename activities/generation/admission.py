"""Admission control: a pool whose GPU queue already holds its maximum backlog takes no more jobs.
POST /generate answers 429 (api/generations/admission.py); a schedule's run is skipped through the
`check_admission` local activity of the control worker (below).

The backlog is read from Temporal, and is approximate (temporal-notes.md §3l): the smaller of the
pool queue's `approximate_backlog_count`, which keeps a cancelled job's task until a GPU worker
polls it away, and the pool's jobs still running (visibility), which bound it; plus the jobs this
process admitted since that reading, which Temporal may not count yet. A reading is reused for
`cache_seconds`, so a burst of submits costs Temporal two calls per pool and period.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from activities.workers.settings import AdmissionSettings
from temporal_workflows.names import (
    ADMISSION_ACTIVITY,
    GENERATION_WORKFLOW,
    SA_POOL,
    pool_task_queue,
)
from temporal_workflows.payloads import AdmissionCheck, AdmissionOutcome

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SECONDS = 1.0
# Retry-After when nothing is being taken from the queue (no GPU worker polls it, or none has
# finished a job lately): long enough not to hammer the API, short enough to notice a new worker.
IDLE_RETRY_AFTER = 30
MAX_RETRY_AFTER = 300


@dataclass(frozen=True)
class QueueStats:
    """What Temporal says of a task queue: tasks waiting, and tasks handed to workers per second
    lately (its `tasks_dispatch_rate`)."""

    backlog: int
    dispatch_rate: float


async def task_queue_stats(client: Client, task_queue: str) -> QueueStats:
    """Activity-task stats of `task_queue` (temporal-notes.md §3l); approximate."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_stats=True,
        )
    )
    stats = response.stats
    return QueueStats(int(stats.approximate_backlog_count), float(stats.tasks_dispatch_rate))


async def unfinished_jobs(client: Client, pool: str) -> int:
    """The pool's generations still running, waiting or not (visibility, eventually consistent)."""
    query = (
        f"WorkflowType = '{GENERATION_WORKFLOW}' AND {SA_POOL.name} = '{pool}' "
        "AND ExecutionStatus = 'Running'"
    )
    return (await client.count_workflows(query)).count


@dataclass(frozen=True)
class BacklogLimits:
    """The most jobs a pool's GPU queue may hold before submits are refused; None: no limit."""

    default: int | None = None
    per_pool: Mapping[str, int] = field(default_factory=dict)

    def of(self, pool: str) -> int | None:
        return self.per_pool.get(pool, self.default)

    @property
    def enabled(self) -> bool:
        return self.default is not None or bool(self.per_pool)


@dataclass(frozen=True)
class AdmissionDecision:
    """Whether a pool takes `jobs` more jobs now, and what that was decided from."""

    pool: str
    backlog: int
    limit: int | None
    jobs: int = 1
    retry_after: int = 0  # seconds; set when refused

    @property
    def admitted(self) -> bool:
        return self.limit is None or self.backlog + self.jobs <= self.limit


def retry_after(backlog: int, limit: int, jobs: int, dispatch_rate: float) -> int:
    """Seconds until the queue has likely room for `jobs` more: the jobs over the limit divided
    by the rate Temporal hands its tasks to GPU workers; IDLE_RETRY_AFTER while nothing is taken."""
    if dispatch_rate <= 0:
        return IDLE_RETRY_AFTER
    over = backlog + jobs - limit
    return max(1, min(MAX_RETRY_AFTER, math.ceil(over / dispatch_rate)))


@dataclass
class _Reading:
    backlog: int
    dispatch_rate: float
    taken_at: float
    admitted_since: int = 0


class PoolAdmission:
    """Decides admissions against `limits` from cached readings of the pools' backlogs."""

    def __init__(
        self,
        client: Client,
        limits: BacklogLimits,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.limits = limits
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._readings: dict[str, _Reading] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def from_settings(cls, client: Client, settings: AdmissionSettings) -> PoolAdmission:
        limits = BacklogLimits(settings.max_backlog, dict(settings.max_backlog_pools))
        return cls(client, limits, cache_seconds=settings.backlog_cache_seconds)

    async def admit(self, pool: str, jobs: int = 1) -> AdmissionDecision:
        """Decide on `jobs` more jobs for `pool`, all or none; admitted ones count as waiting
        from now on (until the next reading of Temporal). Raises RPCError when Temporal does not
        answer."""
        limit = self.limits.of(pool)
        if limit is None:
            return AdmissionDecision(pool, 0, None, jobs)
        reading = await self._reading(pool)
        backlog = reading.backlog + reading.admitted_since
        decision = AdmissionDecision(pool, backlog, limit, jobs)
        if decision.admitted:
            reading.admitted_since += jobs
            return decision
        return AdmissionDecision(
            pool, backlog, limit, jobs, retry_after(backlog, limit, jobs, reading.dispatch_rate)
        )

    async def _reading(self, pool: str) -> _Reading:
        lock = self._locks.setdefault(pool, asyncio.Lock())
        async with lock:  # one refresh per pool at a time; the others use its reading
            reading = self._readings.get(pool)
            if reading is not None and self._clock() - reading.taken_at < self.cache_seconds:
                return reading
            stats, running = await asyncio.gather(
                task_queue_stats(self.client, pool_task_queue(pool)),
                unfinished_jobs(self.client, pool),
            )
            reading = _Reading(min(stats.backlog, running), stats.dispatch_rate, self._clock())
            self._readings[pool] = reading
            return reading


class AdmissionActivities:
    """`check_admission` (control worker, local activity): a schedule's run asks before it queues
    its job, against the control worker's own limits (the same settings as the API's)."""

    def __init__(self, admission: PoolAdmission | None) -> None:
        self._admission = admission

    @activity.defn(name=ADMISSION_ACTIVITY)
    async def check_admission(self, check: AdmissionCheck) -> AdmissionOutcome:
        if self._admission is None:
            return AdmissionOutcome(admitted=True, pool=check.pool)
        try:
            decision = await self._admission.admit(check.pool)
        except RPCError as err:
            # A run is never skipped for want of a reading: the job queues as without a limit.
            logger.warning("task %s: backlog of %s not read: %s", check.task_id, check.pool, err)
            return AdmissionOutcome(admitted=True, pool=check.pool)
        return AdmissionOutcome(
            admitted=decision.admitted,
            pool=decision.pool,
            backlog=decision.backlog,
            max_backlog=decision.limit,
        )
