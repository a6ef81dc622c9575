"""A ComfyUI that hangs, alive but silent: the workflow's stall limit (manifest key
`stall_timeout`) interrupts the prompt, the attempt fails as retryable, the retry succeeds."""

from __future__ import annotations

import asyncio
import re

from temporalio.client import WorkflowHandle

from tests.support.manifests import STALL_TIMEOUT
from tests.support.outputs import assert_stored_once, comfyui_saves, new_prefix, submit_with_prefix
from tests.support.stack import GenerationStack
from tests.support.temporal import pending_execute_state, pending_progress
from tests.support.waiting import wait_for


async def sampler_running(handle: WorkflowHandle) -> bool:
    progress = await pending_progress(handle)
    return progress is not None and progress.class_type == "EmulatorSampler"


async def test_a_hung_comfyui_is_interrupted_at_the_manifests_stall_limit_and_the_retry_succeeds(
    fault_stack: GenerationStack,
):
    # The worker itself has no stall limit: only the manifest's reaches the driver.
    gpu = await fault_stack.start_gpu_worker("gpu-hang")
    assert gpu.worker.settings.stall_timeout is None
    # The sampler goes silent and stays so until someone interrupts it.
    await gpu.emulator.set_faults(hang_on_node="EmulatorSampler", hang_until_interrupted=True)
    prefix = new_prefix()
    handle = await submit_with_prefix(fault_stack, prefix)

    await wait_for(lambda: sampler_running(handle), "the first attempt to reach the sampler")
    # The node already hangs; the retry must find a healthy ComfyUI.
    await gpu.emulator.set_faults()

    async def first_attempt_stalled() -> tuple[int, str | None, str | None] | None:
        state = await pending_execute_state(handle)
        return state if state[1] is not None else None

    attempt, failure_type, message = await wait_for(
        first_attempt_stalled, "the first attempt to fail as stalled", STALL_TIMEOUT + 20
    )
    assert (attempt, failure_type) == (2, "ComfyUIStalled")  # retryable: scheduled again
    silence = re.search(r"no message from ComfyUI for ([0-9.]+) s", message or "")
    assert silence and float(silence.group(1)) >= STALL_TIMEOUT - 0.05, message

    result = await asyncio.wait_for(handle.result(), 30)
    assert (result.attempts, result.infrastructure_retries, result.worker) == (1, 1, "gpu-hang")
    assert_stored_once(fault_stack.data_dir, handle.id, [o.filename for o in result.outputs])
    # The interrupted attempt never reached SaveImage: ComfyUI saved the image once.
    assert comfyui_saves([gpu.emulator.output_dir], prefix) == 1


async def test_a_hung_node_that_ignores_the_interrupt_gets_comfyui_restarted_and_the_retry_succeeds(
    fault_stack: GenerationStack,
):
    gpu = await fault_stack.start_gpu_worker("gpu-stuck")
    # The sampler hangs for good: an interrupt does not reach it.
    await gpu.emulator.set_faults(hang_on_node="EmulatorSampler")
    prefix = new_prefix()
    handle = await submit_with_prefix(fault_stack, prefix)

    async def first_attempt_stalled() -> tuple[int, str | None, str | None] | None:
        state = await pending_execute_state(handle)
        return state if state[1] is not None else None

    # Stall limit, then the grace for the interrupt to take effect, then the restart.
    attempt, failure_type, _ = await wait_for(
        first_attempt_stalled, "the first attempt to fail as stalled", STALL_TIMEOUT + 30
    )
    assert (attempt, failure_type) == (2, "ComfyUIStalled")

    # The restarted ComfyUI has no fault: the retry runs on the same GPU.
    result = await asyncio.wait_for(handle.result(), 60)
    assert (result.attempts, result.infrastructure_retries, result.worker) == (1, 1, "gpu-stuck")
    assert gpu.emulator.process.restarts == 1
    assert_stored_once(fault_stack.data_dir, handle.id, [o.filename for o in result.outputs])
    assert comfyui_saves([gpu.emulator.output_dir], prefix) == 1
