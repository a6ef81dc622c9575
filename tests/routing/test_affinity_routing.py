"""Model-affinity routing on real workers: a job goes to the GPU holding its model, waits for it
only up to the bound while another GPU idles (and longer while none does), a pinned job stays
pinned, a job waiting on a worker's queue can be cancelled, and a backlog routed before any model
is loaded is split by model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from activities.workers.inventory import query_inventory
from temporal_workflows.names import ROUTE_ACTIVITY, worker_task_queue
from temporal_workflows.payloads import GenerationResult
from tests.routing.conftest import AFFINITY_WAIT
from tests.support.metrics import Scrape
from tests.support.routing import (
    CHECKPOINTS,
    ROUTED_WORKFLOW_ID,
    emulator_models,
    post_routed,
)
from tests.support.stack import GenerationStack
from tests.support.temporal import keep_history
from tests.support.waiting import wait_for

MODEL_A, MODEL_B = CHECKPOINTS[0], CHECKPOINTS[1]


async def submit(
    stack: GenerationStack, model: str, seconds: float = 0.0, worker: str | None = None
) -> WorkflowHandle[Any, GenerationResult]:
    """POST /generate: the API routes the job's first try at submit."""
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        return await post_routed(http, stack.client, model, seconds, worker)


async def start_without_api(stack: GenerationStack, model: str) -> WorkflowHandle:
    """A start that leaves routing to the workflow's own step (schedules, batches, old API)."""
    params = {"checkpoint": model, "seconds": 0.0}
    return await stack.submit(params, workflow_id=ROUTED_WORKFLOW_ID)


async def load_on(stack: GenerationStack, client: Client, worker: str, model: str) -> None:
    """Run a job pinned to `worker` with `model`, and wait until the pool knows it is loaded."""
    await (await submit(stack, model, worker=worker)).result()

    async def reported() -> bool:
        inventory = await query_inventory(client, stack.pool)
        loaded = inventory.worker_loaded(worker) if inventory is not None else {}
        return model in loaded.get("CheckpointLoaderSimple", {}).get("ckpt_name", [])

    await wait_for(reported, f"{model} reported loaded on {worker}", 30)


@pytest.mark.parametrize("routed_by", ["api", "workflow"])
async def test_a_job_goes_to_the_worker_holding_its_model(
    routing_stack: GenerationStack, temporal_client: Client, routed_by: str
) -> None:
    await load_on(routing_stack, temporal_client, "gpu-2", MODEL_B)
    loads_before = (await emulator_models(routing_stack.gpu_workers[1].emulator.url))["loads"]

    if routed_by == "api":
        handle = await submit(routing_stack, MODEL_B)
    else:
        handle = await start_without_api(routing_stack, MODEL_B)
    result = await handle.result()

    task = await routing_stack.task(handle.id)
    assert (task.routing, task.worker, result.worker) == ("warm", "gpu-2", "gpu-2")
    assert task.routing_reason == f"{MODEL_B} loaded on gpu-2"
    models = await emulator_models(routing_stack.gpu_workers[1].emulator.url)
    assert models["loads"] == loads_before, "the warm job loaded its model again"
    history = await handle.fetch_history()
    routing_steps = [
        e
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and ROUTE_ACTIVITY in str(e.marker_recorded_event_attributes)
    ]
    # The API's decision is in the start's memo: no routing step, as many events as unrouted.
    assert len(routing_steps) == (0 if routed_by == "api" else 1)
    await keep_history(
        handle, "routed_warm" if routed_by == "workflow" else "routed_warm_at_submit"
    )


async def test_an_idle_gpu_takes_a_warm_job_after_the_bound(
    routing_stack: GenerationStack, temporal_client: Client
) -> None:
    await load_on(routing_stack, temporal_client, "gpu-1", MODEL_A)
    busy = await submit(routing_stack, MODEL_A, seconds=10.0)  # warm on gpu-1, keeps it busy
    await wait_for(lambda: _is_running(routing_stack, busy.id), "the long job to run on gpu-1", 30)

    started = time.monotonic()
    waiting = await submit(routing_stack, MODEL_A)
    result = await waiting.result()
    took = time.monotonic() - started

    task = await routing_stack.task(waiting.id)
    assert (task.routing, result.worker) == ("cold", "gpu-2")
    assert task.routing_reason is not None
    assert task.routing_reason == f"gpu-1 did not take it within {AFFINITY_WAIT:g} s; gpu-2 idle"
    assert took >= AFFINITY_WAIT, "it did not wait the bound for gpu-1"
    assert not (await busy.describe()).close_time, "it waited for gpu-1 to finish"
    assert result.attempts == 1, "waiting for a warm GPU spent a retry"
    assert (await busy.result()).worker == "gpu-1"
    await keep_history(waiting, "routed_cold_after_wait")


async def test_a_pinned_job_stays_on_its_worker(
    routing_stack: GenerationStack, temporal_client: Client
) -> None:
    await load_on(routing_stack, temporal_client, "gpu-1", MODEL_A)

    handle = await submit(routing_stack, MODEL_A, worker="gpu-2")
    result = await handle.result()

    task = await routing_stack.task(handle.id)
    assert (task.routing, task.worker, result.worker) == ("pinned", "gpu-2", "gpu-2")


async def test_a_job_waiting_on_a_workers_queue_can_be_cancelled(
    routing_stack: GenerationStack, temporal_client: Client
) -> None:
    await load_on(routing_stack, temporal_client, "gpu-1", MODEL_A)
    # Both GPUs busy: the job waits for gpu-1 on its queue, and would wait on the pool after.
    busy = [
        await submit(routing_stack, MODEL_A, seconds=8.0, worker="gpu-1"),
        await submit(routing_stack, MODEL_B, seconds=8.0, worker="gpu-2"),
    ]
    for handle in busy:
        await wait_for(lambda h=handle: _is_running(routing_stack, h.id), "busy GPUs", 30)

    handle = await submit(routing_stack, MODEL_A)

    async def waiting_on_gpu_1() -> bool:
        task = await routing_stack.task(handle.id)
        return (
            task.routing == "warm"
            and task.queue is not None
            and task.queue.phase == "waiting_for_gpu_worker"
            and task.queue.task_queue == worker_task_queue(routing_stack.pool, "gpu-1")
        )

    await wait_for(waiting_on_gpu_1, "the job to wait on gpu-1's queue", 10)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), AFFINITY_WAIT)

    task = await routing_stack.task(handle.id)
    assert (task.status, task.routing) == ("CANCELLED", "warm")
    for running in busy:
        await running.result()


async def test_a_warm_job_keeps_waiting_for_its_worker_while_no_gpu_idles(
    routing_stack: GenerationStack, temporal_client: Client
) -> None:
    await load_on(routing_stack, temporal_client, "gpu-1", MODEL_A)
    busy = [
        await submit(routing_stack, MODEL_A, seconds=3 * AFFINITY_WAIT, worker="gpu-1"),
        await submit(routing_stack, MODEL_B, seconds=6 * AFFINITY_WAIT, worker="gpu-2"),
    ]
    for handle in busy:
        await wait_for(lambda h=handle: _is_running(routing_stack, h.id), "busy GPUs", 30)

    handle = await submit(routing_stack, MODEL_A)
    result = await handle.result()

    task = await routing_stack.task(handle.id)
    assert (task.routing, result.worker) == ("warm", "gpu-1")
    assert task.routing_reason == (
        f"gpu-1 did not take it within {AFFINITY_WAIT:g} s; no GPU idles, so it still waits "
        "for gpu-1"
    )
    assert (await busy[0].result()).worker == "gpu-1"
    assert not (await busy[1].describe()).close_time, "gpu-2 was free before it ran"
    await busy[1].result()


async def test_a_backlog_posted_at_once_is_split_by_model_across_the_gpus(
    routing_stack: GenerationStack,
) -> None:
    """No GPU holds the models yet: each model set goes to one GPU, loaded once there."""
    models_c_d = [CHECKPOINTS[2], CHECKPOINTS[3]] * 2
    urls = [w.emulator.url for w in routing_stack.gpu_workers]
    loads_before = sum([(await emulator_models(url))["loads"] for url in urls])
    counted_before = sum(
        Scrape(generate_latest(w.worker.metrics.registry).decode()).total("comfy_model_loads_total")
        for w in routing_stack.gpu_workers
    )

    handles = await asyncio.gather(*(submit(routing_stack, model) for model in models_c_d))
    results = await asyncio.gather(*(handle.result() for handle in handles))

    ran_on: dict[str, set[str]] = {}
    for model, result in zip(models_c_d, results, strict=True):
        ran_on.setdefault(model, set()).add(result.worker)
    assert all(len(workers) == 1 for workers in ran_on.values()), ran_on
    assert set.union(*ran_on.values()) == {"gpu-1", "gpu-2"}, ran_on
    loads = sum([(await emulator_models(url))["loads"] for url in urls]) - loads_before
    assert loads == 2, f"{loads} model loads for 2 models"
    # The workers' own count (comfy_model_loads_total, in their exposition text) agrees.
    counted = sum(
        Scrape(generate_latest(w.worker.metrics.registry).decode()).total("comfy_model_loads_total")
        for w in routing_stack.gpu_workers
    )
    assert counted - counted_before == loads


async def _is_running(stack: GenerationStack, task_id: str) -> bool:
    return (await stack.task(task_id)).status == "PROGRESS"
