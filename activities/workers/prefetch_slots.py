"""The activity slots of a GPU worker's Workers: one while the GPU is idle, one more (a prefetch)
only while every job it holds has one, up to as many prefetched prompts as the recent job
durations need (`PrefetchDepth`). Why this order is fair across GPUs: see gpu.py. The pool Worker
and the worker's own-queue Worker count the GPU's jobs together (`GpuOccupancy`), so a job routed
to this worker waits in Temporal, where another GPU can still take it, while this one is full."""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import threading
from collections import deque
from collections.abc import Callable

from temporalio.worker import (
    CustomSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
)

# From the end of one prompt in ComfyUI to the next job's prompt queued there, when none was
# prefetched: the activity stores its outputs and completes, the slot is polled again, the next
# job is matched, staged and submitted. 0.1-0.3 s on 2 shared cores (the largest idle gaps of
# bench/short_jobs.py's backlog with one prefetched prompt were 0.1-0.2 s on 0.1 s jobs).
HANDOVER_SECONDS = 0.5
# Prompts queued in ComfyUI behind the running one, at most: each waits for the ones before it,
# within its attempt's start-to-close time (twice the manifest's limit), so keep it small.
MAX_PREFETCH = 3


class PrefetchDepth:
    """How many prompts to keep queued in ComfyUI behind the running one: enough that the queue
    does not run dry during a hand-over, given the recent jobs' ComfyUI execution times. One
    while nothing was measured yet, or when jobs take longer than a hand-over."""

    def __init__(
        self,
        *,
        handover_seconds: float = HANDOVER_SECONDS,
        max_prompts: int = MAX_PREFETCH,
        window: int = 8,
    ) -> None:
        self.handover_seconds = handover_seconds
        self.max_prompts = max_prompts
        self._recent: deque[float] = deque(maxlen=window)
        # Read by the slot supplier, which the SDK core may call from its own threads.
        self._lock = threading.Lock()

    def record(self, execution_seconds: float) -> None:
        """A job ended after this long in ComfyUI (0 for a prompt it answered from its cache)."""
        with self._lock:
            self._recent.append(max(0.0, execution_seconds))

    @property
    def prompts(self) -> int:
        with self._lock:
            recent = list(self._recent)
        if not recent:
            return 1
        typical = statistics.median(recent)
        if typical <= 0:
            return self.max_prompts
        return max(1, min(self.max_prompts, math.ceil(self.handover_seconds / typical)))


class _PrefetchPermit(SlotPermit):
    def __init__(self) -> None:
        self.used = False


class GpuOccupancy:
    """The jobs one GPU holds, over the slot suppliers of the Workers that feed it. Each supplier
    keeps its own reservations (a reserved slot sits in a long poll: temporal-notes §3a), so
    neither starves the other; both may reserve while the GPU has room, so two jobs arriving at
    the same moment on both queues can put one job more than `max_slots` on the GPU.

    `changed(used)` is called, under the lock and maybe on an SDK core thread, whenever the
    count changes: it must only hand the news over (e.g. `loop.call_soon_threadsafe`)."""

    def __init__(self, changed: Callable[[int], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.used = 0
        self.suppliers: list[PrefetchSlotSupplier] = []
        self.changed = changed

    def add(self, jobs: int) -> None:
        """Under `lock`: the GPU holds `jobs` more (or fewer)."""
        self.used = max(0, self.used + jobs)
        if self.changed is not None:
            self.changed(self.used)


class PrefetchSlotSupplier(CustomSlotSupplier):
    """Activity slots of one Worker of a GPU worker: one while the GPU is idle, one more only
    while every job the GPU holds is busy (the prefetch), up to `max_slots`, or with `depth` up
    to one running plus `depth.prompts` prefetched. Never share one instance between Workers
    (temporal-notes §3a: a reserved slot sits in a long poll and would starve the other Worker);
    give them one `GpuOccupancy` instead.

    `mark_slot_used` / `release_slot` may be called from the SDK core's threads, so counters are
    guarded by a lock and waiters are woken through their own event loop.
    """

    def __init__(
        self,
        max_slots: int = 2,
        *,
        depth: PrefetchDepth | None = None,
        occupancy: GpuOccupancy | None = None,
    ) -> None:
        self._max_slots = max_slots
        self.depth = depth
        self.occupancy = occupancy or GpuOccupancy()
        self.occupancy.suppliers.append(self)
        self._lock = self.occupancy.lock
        self._reserved = 0
        self._used = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def max_slots(self) -> int:
        if self.depth is None:
            return self._max_slots
        return 1 + self.depth.prompts

    @property
    def reserved(self) -> int:
        return self._reserved

    @property
    def used(self) -> int:
        return self._used

    def _may_reserve(self) -> bool:
        # One poll at a time per Worker, and only while the GPU has room.
        return self._used >= self._reserved and self.occupancy.used < self.max_slots

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._may_reserve():
                    self._reserved += 1
                    return _PrefetchPermit()
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, waiter))
            try:
                await waiter
            except asyncio.CancelledError:
                with self._lock:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove((loop, waiter))
                raise

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        with self._lock:
            if self._may_reserve():
                self._reserved += 1
                return _PrefetchPermit()
        return None

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        with self._lock:
            permit = ctx.permit
            if isinstance(permit, _PrefetchPermit) and not permit.used:
                permit.used = True
                self._used += 1
                self.occupancy.add(1)
            self._wake_all()

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
            permit = ctx.permit
            if isinstance(permit, _PrefetchPermit) and permit.used:
                permit.used = False
                self._used = max(0, self._used - 1)
                self.occupancy.add(-1)
            self._wake_all()

    def _wake_all(self) -> None:
        for supplier in self.occupancy.suppliers:
            supplier._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
