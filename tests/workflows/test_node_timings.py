"""Timings of a finished task as GET /tasks/{id} shows them: the wait for a GPU, ComfyUI's own
execution time and one entry per node, on the real workers and the ComfyUI emulator, whose sampler
sleeps a known time per step. Graph of `sampled_image`: EmptyImage (1) -> EmulatorSampler (2) ->
SaveImage (3)."""

from __future__ import annotations

import asyncio

from api.contract.task_schemas import TaskResult
from tests.support.stack import GenerationStack

STEPS = 5
SECONDS_PER_STEP = 0.1
# Node times are taken on the GPU worker as ComfyUI's messages arrive (`executing` carries no
# timestamp): a node's start may be read a little later than its end, so allow that much.
RECEIPT_JITTER = 0.02


async def finished_result(stack: GenerationStack, params: dict) -> TaskResult:
    handle = await stack.submit(params)
    await asyncio.wait_for(handle.result(), 60)
    task = await stack.task(handle.id)
    assert task.status == "SUCCESS" and isinstance(task.result, TaskResult), task
    return task.result


async def test_a_finished_task_times_each_node_the_gpu_wait_and_comfyuis_execution(
    generation_stack: GenerationStack,
):
    await generation_stack.start_gpu_worker("gpu-timed")
    result = await finished_result(
        generation_stack, {"steps": STEPS, "seconds_per_step": SECONDS_PER_STEP}
    )
    timings = result.timings

    nodes = [(n.node_id, n.class_type, n.cached) for n in timings.nodes]
    assert nodes == [
        ("1", "EmptyImage", False),
        ("2", "EmulatorSampler", False),
        ("3", "SaveImage", False),
    ]
    empty, sampler, save = timings.nodes
    slept = STEPS * SECONDS_PER_STEP
    assert slept - RECEIPT_JITTER <= sampler.seconds < slept + 5
    assert 0 <= empty.seconds < sampler.seconds and 0 <= save.seconds < sampler.seconds

    assert timings.execution_seconds is not None and timings.execution_seconds >= slept - 0.01
    assert timings.comfy_execution_seconds == timings.execution_seconds
    assert timings.queue_wait_seconds is not None and timings.queue_wait_seconds >= 0
    assert timings.total_seconds is not None and timings.execute_seconds is not None
    assert timings.total_seconds >= timings.execute_seconds > timings.queue_wait_seconds
    assert timings.prepare_seconds is not None


async def test_a_rerun_shows_the_nodes_comfyui_took_from_its_cache(
    generation_stack: GenerationStack,
):
    # Caching on (the stack's emulators run with --cache-none by default).
    await generation_stack.start_gpu_worker("gpu-cached", extra_args=())
    params = {"steps": STEPS, "seconds_per_step": SECONDS_PER_STEP, "filename_prefix": "first"}
    first = await finished_result(generation_stack, params)
    # Another file name: only SaveImage's inputs differ, so the image and the sampler are hits.
    again = await finished_result(generation_stack, {**params, "filename_prefix": "again"})

    assert [n.cached for n in first.timings.nodes] == [False, False, False]
    assert [(n.node_id, n.class_type, n.cached, n.seconds) for n in again.timings.nodes[:2]] == [
        ("1", "EmptyImage", True, 0.0),
        ("2", "EmulatorSampler", True, 0.0),
    ]
    (saved,) = again.timings.nodes[2:]
    assert (saved.node_id, saved.cached) == ("3", False)
    assert saved.seconds < STEPS * SECONDS_PER_STEP
