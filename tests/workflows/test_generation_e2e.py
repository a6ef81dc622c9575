"""Generations end to end: the real dev server, the control worker, in-process GPU workers and
ComfyUI emulator processes. Nothing here is a stand-in except ComfyUI itself."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.comfyui.client import ComfyUIClient
from activities.generation.execute import prompt_id_for
from activities.io.output_store import LocalOutputStore
from api.cli.devstack.temporal_server import temporal_cli
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.names import SA_POOL
from temporal_workflows.payloads import GenerationError, Progress
from tests.support.stack import GenerationStack, RunningGpuWorker
from tests.support.temporal import keep_history, pending_progress
from tests.support.waiting import wait_for


async def activity_attempts(handle: WorkflowHandle) -> list[int]:
    """Attempt numbers of the execute_prompt starts in history, one per execute activity.
    Temporal writes only the last attempt's start, so [1] means "ran once", [2] means "succeeded
    or failed on a retry in place", [1, 1] "a second activity: the workflow retried"."""
    history = await handle.fetch_history()
    return [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


def failure_of(err: WorkflowFailureError) -> tuple[ApplicationError, GenerationError]:
    cause = err.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause, GenerationError.model_validate(cause.details[0])


async def prompt_ids_in_queue(worker: RunningGpuWorker) -> tuple[list[str], list[str]]:
    queue = await worker.comfy_queue()
    return (
        [item[1] for item in queue.get("queue_running", [])],
        [item[1] for item in queue.get("queue_pending", [])],
    )


async def first_prompt_id(handle: WorkflowHandle) -> str:
    description = await handle.describe()
    return prompt_id_for(handle.id, description.run_id or "", 1, 1)


async def test_generation_succeeds_and_its_file_lands_in_the_output_store(
    generation_stack: GenerationStack,
):
    gpu = await generation_stack.start_gpu_worker("gpu-one")
    handle = await generation_stack.submit({"width": 24, "filename_prefix": "first"})
    result = await asyncio.wait_for(handle.result(), 30)

    assert result.worker == "gpu-one" and result.attempts == 1
    assert result.params["width"] == 24
    assert len(result.outputs) == 1
    output = result.outputs[0]
    assert output.node_id == "3" and output.content_type == "image/png"
    stored = LocalOutputStore(generation_stack.data_dir).path_for(handle.id, output.filename)
    data = stored.read_bytes()
    assert len(data) == output.size and hashlib.sha256(data).hexdigest() == output.sha256
    assert data.startswith(b"\x89PNG")
    assert result.timings["comfy_execution_seconds"] >= 0
    assert gpu.worker.polling.is_set()
    await keep_history(handle, "success")


async def test_a_graph_rendered_at_submit_goes_straight_to_the_gpu_step(
    generation_stack: GenerationStack,
):
    await generation_stack.start_gpu_worker("gpu-rendered")
    handle = await generation_stack.submit({"width": 24}, rendered=True)
    result = await asyncio.wait_for(handle.result(), 30)

    assert result.worker == "gpu-rendered" and result.params["width"] == 24
    history = await handle.fetch_history()
    kinds = [event.event_type for event in history.events]
    # No render step and no patch marker (one local activity marker: the routing step), and no
    # search attributes upserted before the GPU step: POST /generate set them when it started
    # the workflow.
    assert kinds.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 1
    gpu_step = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    assert EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES not in kinds[:gpu_step]
    description = await handle.describe()
    assert description.typed_search_attributes.get(SA_POOL) == generation_stack.pool
    await keep_history(handle, "success_rendered_at_submit")


async def test_two_gpu_workers_share_a_backlog_of_20_and_each_job_succeeds_once(
    generation_stack: GenerationStack,
):
    await generation_stack.start_gpu_worker("gpu-a")
    await generation_stack.start_gpu_worker("gpu-b")
    handles = [
        await generation_stack.submit(
            {"steps": 2, "seconds_per_step": 0.05, "filename_prefix": f"job{i}"}
        )
        for i in range(20)
    ]
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 120)

    per_worker = Counter(r.worker for r in results)
    assert set(per_worker) == {"gpu-a", "gpu-b"}, per_worker
    store = LocalOutputStore(generation_stack.data_dir)
    for handle, result in zip(handles, results, strict=True):
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert await activity_attempts(handle) == [1]
        # Exactly this job's one file, named from its own prefix: no duplicates, no strays.
        assert [p.name for p in store.files(handle.id)] == [result.outputs[0].filename]
        assert result.outputs[0].filename.startswith(result.params["filename_prefix"])


async def test_comfyui_execution_error_fails_with_its_reason_node_and_class_type(
    generation_stack: GenerationStack,
):
    gpu = await generation_stack.start_gpu_worker("gpu-fail")
    await gpu.emulator.set_faults(
        fail_on_node="SaveImage", exception_type="OSError", exception_message="disk is full"
    )
    handle = await generation_stack.submit()
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), 30)

    cause, error = failure_of(caught.value)
    assert cause.type == "ComfyUIExecutionError"
    assert cause.message.startswith("ComfyUI failed in node 3 (SaveImage): ")
    assert "disk is full" in cause.message
    assert (error.node_id, error.class_type, error.attempt) == ("3", "SaveImage", 1)
    assert await activity_attempts(handle) == [1]
    await keep_history(handle, "comfyui_execution_error")


async def test_comfyui_validation_error_is_not_retried_and_names_the_parameter(
    generation_stack: GenerationStack,
):
    await generation_stack.start_gpu_worker("gpu-validate")
    # Our manifest allows it; ComfyUI's EmptyImage does not (max resolution).
    handle = await generation_stack.submit({"width": 99999})
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), 30)

    cause, error = failure_of(caught.value)
    assert cause.type == "ComfyUIValidationError"
    assert (error.node_id, error.input_name, error.param) == ("1", "width", "width")
    assert "width" in cause.message
    assert await activity_attempts(handle) == [1]


async def test_invalid_params_fail_before_any_gpu_work(generation_stack: GenerationStack):
    handle = await generation_stack.submit({"steps": 0})
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), 30)
    cause, error = failure_of(caught.value)
    assert cause.type == "InvalidParams" and error.param == "steps"
    assert await activity_attempts(handle) == []
    await keep_history(handle, "invalid_params")


async def test_cancel_while_running_interrupts_comfyui_before_the_workflow_closes(
    generation_stack: GenerationStack,
):
    gpu = await generation_stack.start_gpu_worker("gpu-cancel")
    handle = await generation_stack.submit({"steps": 200, "seconds_per_step": 0.05})

    async def running_with_progress() -> Progress | None:
        progress = await pending_progress(handle)
        return progress if progress and progress.phase == "running" and progress.step else None

    progress = await wait_for(running_with_progress, "progress heartbeats from the sampler")
    assert progress.worker == "gpu-cancel" and progress.class_type == "EmulatorSampler"
    prompt_id = await first_prompt_id(handle)
    assert (await prompt_ids_in_queue(gpu))[0] == [prompt_id]

    await handle.cancel(reason="stop it")
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 30)
    # Closed as Canceled only after ComfyUI confirmed: its queue is already empty now.
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await prompt_ids_in_queue(gpu) == ([], [])
    async with ComfyUIClient(gpu.emulator.url) as comfy:
        entry = await comfy.history(prompt_id)
    assert entry is not None
    messages = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in messages
    await keep_history(handle, "cancel_while_running")


async def test_prefetched_job_waits_in_comfyuis_queue_and_a_cancel_deletes_it_there(
    generation_stack: GenerationStack,
):
    gpu = await generation_stack.start_gpu_worker("gpu-prefetch")
    running = await generation_stack.submit({"steps": 60, "seconds_per_step": 0.05})
    running_prompt = await first_prompt_id(running)

    async def first_is_running() -> bool:
        return (await prompt_ids_in_queue(gpu))[0] == [running_prompt]

    await wait_for(first_is_running, "the first job to run in ComfyUI")
    prefetched = await generation_stack.submit({"steps": 60, "seconds_per_step": 0.05})
    prefetched_prompt = await first_prompt_id(prefetched)

    async def second_is_pending() -> bool:
        return (await prompt_ids_in_queue(gpu))[1] == [prefetched_prompt]

    # While job 1 runs, the worker took job 2 and queued it in ComfyUI.
    await wait_for(second_is_pending, "the second job to wait in ComfyUI's queue")

    await prefetched.signal(GenerationWorkflow.cancel, "not needed")
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(prefetched.result(), 30)
    assert (await prefetched.describe()).status == WorkflowExecutionStatus.CANCELED
    running_ids, pending_ids = await prompt_ids_in_queue(gpu)
    assert running_ids == [running_prompt] and pending_ids == []
    async with ComfyUIClient(gpu.emulator.url) as comfy:
        assert await comfy.history(prefetched_prompt) is None  # deleted, never run
    status = await prefetched.query(GenerationWorkflow.status)
    assert status.cancel_reason == "not needed"
    await running.cancel()
    await keep_history(prefetched, "cancel_signal_while_prefetched")


async def test_an_idle_worker_gets_the_next_job_before_a_busy_one_prefetches_it(
    generation_stack: GenerationStack,
):
    # gpu-early starts polling first, so its poll is the oldest and it takes job 1; its
    # prefetch poll starts only then, after gpu-late's poll: job 2 must go to the idle gpu-late.
    early = await generation_stack.start_gpu_worker("gpu-early")
    await generation_stack.start_gpu_worker("gpu-late")
    job1 = await generation_stack.submit({"steps": 60, "seconds_per_step": 0.05})

    async def worker_of(handle: WorkflowHandle) -> str | None:
        progress = await pending_progress(handle)
        return progress.worker if progress else None

    assert await wait_for(lambda: worker_of(job1), "job 1 to start") == "gpu-early"
    job2 = await generation_stack.submit({"steps": 60, "seconds_per_step": 0.05})
    assert await wait_for(lambda: worker_of(job2), "job 2 to start") == "gpu-late"
    # Both busy now: job 3 is prefetched by one of them and waits in that ComfyUI's queue.
    job3 = await generation_stack.submit({"steps": 1})
    job3_prompt = await first_prompt_id(job3)

    async def job3_pending_somewhere() -> bool:
        pending = []
        for gpu in generation_stack.gpu_workers:
            pending += (await prompt_ids_in_queue(gpu))[1]
        return job3_prompt in pending

    await wait_for(job3_pending_somewhere, "job 3 to be prefetched")
    assert job3_prompt in (await prompt_ids_in_queue(early))[1]
    for handle in (job1, job2, job3):
        await handle.cancel()


async def test_comfyui_dying_mid_job_pauses_polling_and_the_retry_succeeds_after_restart(
    generation_stack: GenerationStack,
):
    gpu = await generation_stack.start_gpu_worker("gpu-crash")
    polling_changes: list[bool] = []

    async def watch_polling() -> None:
        while True:
            state = gpu.worker.polling.is_set()
            if not polling_changes or polling_changes[-1] != state:
                polling_changes.append(state)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch_polling())
    try:
        # The emulator process exits (like a CUDA crash) when the sampler starts; its
        # replacement starts without the fault.
        await gpu.emulator.set_faults(crash_on_node="EmulatorSampler")
        handle = await generation_stack.submit()
        result = await asyncio.wait_for(handle.result(), 60)
    finally:
        watcher.cancel()
    assert result.worker == "gpu-crash"
    assert (result.attempts, result.infrastructure_retries) == (1, 1)
    assert await activity_attempts(handle) == [2]
    # Polling stopped while ComfyUI was down and resumed once it answered again.
    assert polling_changes[:3] == [True, False, True]
    assert gpu.emulator.process.restarts == 1
    await keep_history(handle, "retried_after_comfyui_crash")


async def run_temporal_cli(stack: GenerationStack, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        temporal_cli(), *args, "--address", stack.address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    return output.decode()


async def start_long_job(
    stack: GenerationStack, gpu: RunningGpuWorker
) -> tuple[WorkflowHandle, str]:
    handle = await stack.submit({"steps": 200, "seconds_per_step": 0.05})
    prompt_id = await first_prompt_id(handle)

    async def running_in_comfyui() -> bool:
        return (await prompt_ids_in_queue(gpu))[0] == [prompt_id]

    await wait_for(running_in_comfyui, "the job to run in ComfyUI")
    return handle, prompt_id


async def test_temporal_cli_cancel_stops_the_prompt_in_comfyui(generation_stack: GenerationStack):
    gpu = await generation_stack.start_gpu_worker("gpu-cli")
    handle, _ = await start_long_job(generation_stack, gpu)
    await run_temporal_cli(generation_stack, "workflow", "cancel", "--workflow-id", handle.id)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 30)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await prompt_ids_in_queue(gpu) == ([], [])


async def test_temporal_cli_cancel_signal_records_its_reason(generation_stack: GenerationStack):
    gpu = await generation_stack.start_gpu_worker("gpu-cli-signal")
    handle, _ = await start_long_job(generation_stack, gpu)
    await run_temporal_cli(
        generation_stack, "workflow", "signal", "--workflow-id", handle.id,
        "--name", "cancel", "--input", '"wrong seed"',
    )  # fmt: skip
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 30)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert await prompt_ids_in_queue(gpu) == ([], [])
    assert (await handle.query(GenerationWorkflow.status)).cancel_reason == "wrong seed"


async def test_terminate_still_interrupts_comfyui_at_the_next_heartbeat(
    generation_stack: GenerationStack,
):
    gpu = await generation_stack.start_gpu_worker("gpu-terminate")
    handle, prompt_id = await start_long_job(generation_stack, gpu)
    await run_temporal_cli(
        generation_stack, "workflow", "terminate", "--workflow-id", handle.id, "--reason", "stop"
    )
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED

    async def comfyui_idle() -> bool:
        return await prompt_ids_in_queue(gpu) == ([], [])

    # No workflow code runs after a terminate: the worker learns of it from a heartbeat answer.
    await wait_for(comfyui_idle, "ComfyUI to drop the terminated job's prompt", timeout=10)
    async with ComfyUIClient(gpu.emulator.url) as comfy:
        entry = await comfy.history(prompt_id)
    assert entry is not None
    assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]]


async def test_progress_reaches_temporal_within_two_seconds_of_comfyui_reporting_it(
    generation_stack: GenerationStack,
):
    gpu = await generation_stack.start_gpu_worker("gpu-progress")
    # Ten steps a second: step k is reported about k * 0.1 s after ComfyUI starts the prompt.
    handle = await generation_stack.submit({"steps": 80, "seconds_per_step": 0.1})
    seen: dict[int, float] = {}  # step -> wall-clock time it was first visible in Temporal

    async def sampled_for_three_seconds() -> bool:
        progress = await pending_progress(handle)
        if progress and progress.class_type == "EmulatorSampler" and progress.step:
            seen.setdefault(progress.step, time.time())
        return len(seen) > 1 and max(seen.values()) - min(seen.values()) >= 3.0

    await wait_for(sampled_for_three_seconds, "three seconds of sampler progress")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 30)
    async with ComfyUIClient(gpu.emulator.url) as comfy:
        entry = await comfy.history(await first_prompt_id(handle))
    assert entry is not None
    started_ms = next(
        data["timestamp"] for kind, data in entry["status"]["messages"] if kind == "execution_start"
    )
    lags = {step: at - (started_ms / 1000 + step * 0.1) for step, at in seen.items()}
    assert max(lags.values()) < 2.0, lags
    assert len(lags) >= 4, lags  # it moved several times within those 3 s


async def test_out_of_memory_gets_exactly_one_retry(generation_stack: GenerationStack):
    gpu = await generation_stack.start_gpu_worker("gpu-oom")
    await gpu.emulator.set_faults(
        fail_on_node="EmulatorSampler",
        exception_type="torch.OutOfMemoryError",
        exception_message="CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    handle = await generation_stack.submit()
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(handle.result(), 30)
    cause, error = failure_of(caught.value)
    assert cause.type == "ComfyUIOutOfMemory"
    assert (error.node_id, error.class_type) == ("2", "EmulatorSampler")
    # The first was retried after ComfyUI freed its memory, without spending the job's retries.
    assert (error.attempt, error.infrastructure_retries) == (1, 1)
    assert "CUDA out of memory" in cause.message
    assert await activity_attempts(handle) == [1, 1]
