"""Out of memory in ComfyUI: the worker asks ComfyUI to free its memory, and the attempt is retried
once, without spending the job's retries; a job that fits after the cleanup succeeds on that
retry."""

from __future__ import annotations

import asyncio

import httpx

from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.payloads import InfrastructureFault
from tests.support.outputs import assert_stored_once, comfyui_saves, new_prefix, submit_with_prefix
from tests.support.stack import GenerationStack
from tests.support.waiting import wait_for


async def free_requests(url: str) -> list[dict]:
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(f"{url}/emulator/free-requests", timeout=5.0)
        response.raise_for_status()
        return response.json()


async def test_out_of_memory_frees_comfyui_memory_then_the_one_retry_succeeds(
    fault_stack: GenerationStack,
):
    gpu = await fault_stack.start_gpu_worker("gpu-oom-once")
    # Only the first sampler runs out of memory: after the cleanup, the retry fits.
    await gpu.emulator.set_faults(
        fail_on_node="EmulatorSampler",
        fail_once=True,
        exception_type="torch.OutOfMemoryError",
        exception_message="CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    prefix = new_prefix()
    handle = await submit_with_prefix(fault_stack, prefix)

    async def first_attempt_failed() -> InfrastructureFault | None:
        return (await handle.query(GenerationWorkflow.status)).last_infrastructure_fault

    fault = await wait_for(first_attempt_failed, "the out-of-memory failure")
    assert fault.type == "ComfyUIOutOfMemory"
    # Before the failure was reported, the worker asked ComfyUI to unload models and free memory.
    assert await free_requests(gpu.emulator.url) == [{"unload_models": True, "free_memory": True}]

    result = await asyncio.wait_for(handle.result(), 30)
    assert (result.attempts, result.infrastructure_retries) == (1, 1)
    assert_stored_once(fault_stack.data_dir, handle.id, [o.filename for o in result.outputs])
    assert comfyui_saves([gpu.emulator.output_dir], prefix) == 1  # the first attempt never saved
