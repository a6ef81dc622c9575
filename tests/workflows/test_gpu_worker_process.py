"""The worker commands as real processes. `gpu-worker`: SIGTERM stops polling, lets the running
job finish, hands a prefetched job back, stops ComfyUI and exits cleanly; a killed worker loses
no job. `control-worker`: serves GenerationWorkflow, configured from the environment."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.io.output_store import LocalOutputStore
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.names import CONTROL_TASK_QUEUE
from temporal_workflows.payloads import GenerationRequest
from tests.support.emulator import EMULATOR_DIR
from tests.support.environment import python3_without_comfyui_requirements
from tests.support.stack import GenerationStack
from tests.support.temporal import pending_progress
from tests.support.waiting import wait_for
from tests.support.worker_processes import (
    COMFY_TEMPORAL,
    clean_environment,
    gpu_worker_command,
    kill_processes_mentioning,
    processes_mentioning,
)


async def start_worker_process(
    stack: GenerationStack, data_dir: Path, name: str
) -> asyncio.subprocess.Process:
    command = gpu_worker_command(
        pool=stack.pool,
        name=name,
        data_dir=data_dir,
        temporal_address=stack.address,
        shutdown_grace=30,
    )
    env = clean_environment()
    return await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )


async def test_sigterm_finishes_the_running_job_hands_back_the_queued_one_and_exits(
    generation_stack: GenerationStack, tmp_path: Path
):
    data_dir = tmp_path / "worker-data"
    process = await start_worker_process(generation_stack, data_dir, "gpu-proc")
    comfyui_dir = str(data_dir / "comfyui" / "gpu-proc")
    try:
        running = await generation_stack.submit({"steps": 40, "seconds_per_step": 0.05})

        async def running_on_worker() -> bool:
            progress = await pending_progress(running)
            return bool(progress and progress.phase == "running" and progress.step)

        await wait_for(running_on_worker, "the first job to run on the worker process", 60)
        queued = await generation_stack.submit({"steps": 1})

        async def prefetched() -> bool:
            progress = await pending_progress(queued)
            return bool(progress and progress.worker == "gpu-proc" and progress.phase == "queued")

        await wait_for(prefetched, "the second job to be prefetched")

        process.send_signal(signal.SIGTERM)
        result = await asyncio.wait_for(running.result(), 30)
        exit_code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert exit_code == 0, stderr[-3000:]
    assert result.worker == "gpu-proc" and result.attempts == 1
    assert (data_dir / "outputs" / running.id / result.outputs[0].filename).is_file()
    assert processes_mentioning(comfyui_dir) == []  # its ComfyUI is gone too

    # The prefetched job went back to the pool queue: another worker finishes it.
    await generation_stack.start_gpu_worker("gpu-next")
    handed_back = await asyncio.wait_for(queued.result(), 30)
    assert handed_back.worker == "gpu-next"
    assert (handed_back.attempts, handed_back.infrastructure_retries) == (1, 1)


async def test_a_worker_that_dies_mid_job_loses_nothing_another_gpu_finishes_it(
    generation_stack: GenerationStack, tmp_path: Path
):
    data_dir = tmp_path / "doomed-data"
    process = await start_worker_process(generation_stack, data_dir, "gpu-doomed")
    comfyui_dir = str(data_dir / "comfyui" / "gpu-doomed")
    try:
        handle = await generation_stack.submit({"steps": 40, "seconds_per_step": 0.05})

        async def running_on_doomed() -> bool:
            progress = await pending_progress(handle)
            return bool(progress and progress.worker == "gpu-doomed" and progress.step)

        await wait_for(running_on_doomed, "the job to run on the doomed worker", 60)
        process.kill()  # no goodbye: Temporal only notices the missing heartbeats
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        # Its ComfyUI ran in its own session and outlives it: stop that too.
        kill_processes_mentioning(comfyui_dir)
    await generation_stack.start_gpu_worker("gpu-survivor")
    # The heartbeat timeout (10 s) marks the attempt lost; the retry goes to the survivor.
    result = await asyncio.wait_for(handle.result(), 45)
    assert result.worker == "gpu-survivor"
    assert (result.attempts, result.infrastructure_retries) == (1, 1)
    assert [p.name for p in LocalOutputStore(generation_stack.data_dir).files(handle.id)] == [
        result.outputs[0].filename
    ]


async def test_control_worker_command_serves_generations_from_the_environment_config(
    generation_stack: GenerationStack, tmp_path: Path
):
    manifests_dir = tmp_path / "control-manifests"
    manifests_dir.mkdir()
    (manifests_dir / "workflows.yaml").write_text("{}\n")
    env = clean_environment()
    env["TEMPORAL_ADDRESS"] = generation_stack.address  # reached through temporalio.envconfig
    env["MANIFESTS_DIR"] = str(manifests_dir)
    process = await asyncio.create_subprocess_exec(
        COMFY_TEMPORAL, "control-worker", "--workflows", str(tmp_path),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        handle = await generation_stack.client.start_workflow(
            GenerationWorkflow.run,
            GenerationRequest(workflow_id="no_such_workflow"),
            id=f"gen-{uuid.uuid4()}",
            task_queue=CONTROL_TASK_QUEUE,
        )
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(handle.result(), 30)
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "UnknownWorkflow"
    assert "no_such_workflow" in cause.message
    assert exit_code == 0


async def _gpu_worker_alone(env: dict[str, str], *argv: str) -> tuple[int, str]:
    """Runs `gpu-worker` with Temporal unreachable: what it says before it ever connects."""
    process = await asyncio.create_subprocess_exec(
        COMFY_TEMPORAL, "gpu-worker", "--temporal-address", "127.0.0.1:1", *argv,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_gpu_worker_with_a_comfyui_path_that_is_no_comfyui_exits_saying_so(
    tmp_path: Path,
) -> None:
    code, output = await _gpu_worker_alone(
        clean_environment(), "--comfyui", str(tmp_path), "--data-dir", str(tmp_path / "data")
    )
    assert code == 2, output
    assert f"COMFYUI_PATH / --comfyui {tmp_path}: no main.py there" in output


async def test_gpu_worker_whose_python_cannot_run_comfyui_exits_once_saying_what_to_set(
    tmp_path: Path,
) -> None:
    env = clean_environment()
    env.update(COMFYUI_PATH=str(EMULATOR_DIR), PATH=python3_without_comfyui_requirements(tmp_path))
    code, output = await _gpu_worker_alone(env, "--data-dir", str(tmp_path / "data"))
    assert code == 3, output
    assert "could not start" in output and "Set COMFYUI_PYTHON (or --comfyui-python)" in output
    assert "ModuleNotFoundError" in output
    assert output.count("Traceback (most recent call last)") == 1, output
    assert "restarting" not in output
