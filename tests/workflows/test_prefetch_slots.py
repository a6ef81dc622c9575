"""The GPU worker's pool-queue slot supplier: one poll while idle, prefetches only while busy,
as many as the recent job durations need."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from activities.workers.prefetch_slots import GpuOccupancy, PrefetchDepth, PrefetchSlotSupplier

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


def busy_slots(supplier: PrefetchSlotSupplier) -> int:
    """Take and use slots while the supplier grants them without waiting; how many it gave."""
    while (permit := supplier.try_reserve_slot(CTX)) is not None:  # type: ignore[arg-type]
        used(supplier, permit)
    return supplier.reserved


def test_prefetch_depth_covers_a_hand_over_with_the_recent_job_durations():
    depth = PrefetchDepth(handover_seconds=0.5, max_prompts=3)
    assert depth.prompts == 1  # nothing measured yet
    for seconds in (10.0, 0.6, 0.4):
        depth.record(seconds)
    assert depth.prompts == 1  # median 0.6 s: one queued prompt outlasts a hand-over
    for _ in range(4):
        depth.record(0.2)
    assert depth.prompts == 3  # median 0.2 s: 0.5 / 0.2, rounded up
    for _ in range(8):
        depth.record(0.01)
    assert depth.prompts == 3  # never more than max_prompts


async def test_short_jobs_open_more_prefetch_slots_but_only_while_every_slot_is_busy():
    depth = PrefetchDepth(handover_seconds=0.5, max_prompts=3)
    supplier = PrefetchSlotSupplier(depth=depth)
    assert busy_slots(supplier) == 2  # long or unknown jobs: one running, one prefetched
    for _ in range(8):
        depth.record(0.1)
    assert busy_slots(supplier) == 4  # short jobs: one running, three prefetched
    idle = PrefetchSlotSupplier(depth=depth)
    permit = idle.try_reserve_slot(CTX)  # type: ignore[arg-type]
    assert permit is not None
    # An idle worker (its one slot not busy yet) holds a single poll, however short the jobs.
    assert idle.try_reserve_slot(CTX) is None  # type: ignore[arg-type]


async def test_the_pool_and_own_queue_workers_count_the_gpus_jobs_together():
    occupancy = GpuOccupancy()
    pool = PrefetchSlotSupplier(max_slots=1, occupancy=occupancy)
    own = PrefetchSlotSupplier(max_slots=1, occupancy=occupancy)
    pool_poll = await asyncio.wait_for(pool.reserve_slot(CTX), 1)  # type: ignore[arg-type]
    own_poll = await asyncio.wait_for(own.reserve_slot(CTX), 1)  # type: ignore[arg-type]
    used(pool, pool_poll)  # a job from the pool queue fills the GPU
    released(own, own_poll)  # the own queue's poll ends empty
    waiting = await reserve_soon(own)
    assert not waiting.done(), "a routed job was taken while the GPU was full"
    assert pool.try_reserve_slot(CTX) is None  # type: ignore[arg-type]
    released(pool, pool_poll)  # the pool job ended: the routed one may come
    await asyncio.wait_for(waiting, 1)
