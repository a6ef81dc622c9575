"""The GPU worker's pool-queue slot supplier: one poll while idle, one prefetch only while busy."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from activities.workers.prefetch_slots import PrefetchSlotSupplier

CTX = SimpleNamespace(slot_type="activity", task_queue="comfy-gpu-x", is_sticky=False)


def used(supplier: PrefetchSlotSupplier, permit) -> None:
    supplier.mark_slot_used(SimpleNamespace(permit=permit, slot_info=None))


def released(supplier: PrefetchSlotSupplier, permit) -> None:
    supplier.release_slot(SimpleNamespace(permit=permit, slot_info=None))


async def reserve_soon(supplier: PrefetchSlotSupplier) -> asyncio.Task:
    task = asyncio.create_task(supplier.reserve_slot(CTX))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # let it reach its wait
    return task


async def test_an_idle_worker_holds_a_single_slot():
    supplier = PrefetchSlotSupplier()
    await asyncio.wait_for(supplier.reserve_slot(CTX), 1)  # type: ignore[arg-type]
    second = await reserve_soon(supplier)
    assert not second.done() and supplier.try_reserve_slot(CTX) is None  # type: ignore[arg-type]
    second.cancel()


async def test_a_busy_slot_opens_exactly_one_prefetch_slot():
    supplier = PrefetchSlotSupplier()
    first = await supplier.reserve_slot(CTX)  # type: ignore[arg-type]
    second = await reserve_soon(supplier)
    used(supplier, first)
    prefetch = await asyncio.wait_for(second, 1)
    third = await reserve_soon(supplier)
    used(supplier, prefetch)  # both busy: still no third slot
    await asyncio.sleep(0)
    assert not third.done() and supplier.reserved == 2
    third.cancel()


async def test_finishing_a_job_opens_the_next_prefetch_slot():
    supplier = PrefetchSlotSupplier()
    first = await supplier.reserve_slot(CTX)  # type: ignore[arg-type]
    used(supplier, first)
    second = await supplier.reserve_slot(CTX)  # type: ignore[arg-type]
    used(supplier, second)
    waiting = await reserve_soon(supplier)
    released(supplier, first)  # job 1 done; job 2 now runs: one more may wait behind it
    await asyncio.wait_for(waiting, 1)
    assert (supplier.reserved, supplier.used) == (2, 1)


async def test_an_unused_permit_given_back_leaves_the_worker_idle():
    supplier = PrefetchSlotSupplier()
    permit = await supplier.reserve_slot(CTX)  # type: ignore[arg-type]
    released(supplier, permit)  # e.g. the poll ended without a task
    assert (supplier.reserved, supplier.used) == (0, 0)
    await asyncio.wait_for(supplier.reserve_slot(CTX), 1)  # type: ignore[arg-type]


async def test_a_slot_used_from_another_thread_wakes_the_waiting_reservation():
    supplier = PrefetchSlotSupplier()
    first = await supplier.reserve_slot(CTX)  # type: ignore[arg-type]
    second = await reserve_soon(supplier)
    thread = threading.Thread(target=used, args=(supplier, first))
    thread.start()
    thread.join()
    await asyncio.wait_for(second, 1)


async def test_without_prefetch_a_busy_worker_takes_nothing_more():
    supplier = PrefetchSlotSupplier(max_slots=1)
    first = await supplier.reserve_slot(CTX)  # type: ignore[arg-type]
    used(supplier, first)
    assert supplier.try_reserve_slot(CTX) is None  # type: ignore[arg-type]
