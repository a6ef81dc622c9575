"""The pool Worker's activity slots: one while the GPU worker is idle, a second (the prefetch) only
while every slot it holds runs a job. Why this order is fair across GPUs: see gpu.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from temporalio.worker import (
    CustomSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
)


class _PrefetchPermit(SlotPermit):
    def __init__(self) -> None:
        self.used = False


class PrefetchSlotSupplier(CustomSlotSupplier):
    """Activity slots of the pool Worker: one while idle, a second only while every reserved
    slot is busy (the prefetch). Never share one instance between Workers (temporal-notes §3a:
    a reserved slot sits in a long poll and would starve the other Worker).

    `mark_slot_used` / `release_slot` may be called from the SDK core's threads, so counters are
    guarded by a lock and waiters are woken through their own event loop.
    """

    def __init__(self, max_slots: int = 2) -> None:
        self.max_slots = max_slots
        self._lock = threading.Lock()
        self._reserved = 0
        self._used = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def reserved(self) -> int:
        return self._reserved

    @property
    def used(self) -> int:
        return self._used

    def _may_reserve(self) -> bool:
        if self._reserved == 0:
            return True
        return self._reserved < self.max_slots and self._used >= self._reserved

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
            self._wake()

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
            permit = ctx.permit
            if isinstance(permit, _PrefetchPermit) and permit.used:
                permit.used = False
                self._used = max(0, self._used - 1)
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
