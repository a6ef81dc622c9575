"""The fleet's own churn spends no job's retries: a rolling restart (SIGTERM) of every GPU worker
and then of every control worker during a backlog finishes every job at its first attempt, once;
and a job whose GPU workers are killed more often than its `retries` still succeeds."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.workers.temporal_client import connect_temporal
from manifests.registry import ManifestRegistry
from tests.support.manifests import (
    SAMPLED_BASE_YAML,
    SAMPLED_IMAGE_GRAPH,
    SAMPLED_WORKFLOWS_YAML,
    valid_registry,
    write_fault_manifests,
    write_manifest_dirs,
)
from tests.support.outputs import assert_stored_once, comfyui_saves, new_prefix, submit_with_prefix
from tests.support.stack import generation_stack
from tests.support.temporal import RestartableDevServer, pending_progress
from tests.support.waiting import wait_for
from tests.support.worker_processes import ControlWorkerProcess, GpuWorkerProcess

# About 1 s of ComfyUI time each (10 steps of 0.1 s). Before each restart the backlog is topped
# up to BACKLOG open jobs, so every restart meets jobs in flight however fast the machine is: the
# restart of a control worker takes a few seconds on a loaded machine, two GPUs run 2 jobs/s.
BACKLOG = 16


async def open_count(handles: list[WorkflowHandle]) -> int:
    statuses = [(await h.describe()).status for h in handles]
    return sum(s == WorkflowExecutionStatus.RUNNING for s in statuses)


async def running_on(handles: list[WorkflowHandle], worker: str) -> bool:
    """Whether ComfyUI on `worker` is running one of these jobs now."""
    for handle in handles:
        progress = await pending_progress(handle)
        if progress and progress.worker == worker and progress.phase == "running":
            return True
    return False


async def test_a_rolling_restart_of_every_worker_fails_nothing_and_spends_no_retries(
    own_dev_server: RestartableDevServer, tmp_path: Path
):
    pool = f"rolling-{uuid.uuid4().hex[:8]}"
    manifests_dir, workflows_dir = write_fault_manifests(tmp_path, pool)
    address = own_dev_server.address
    client = await connect_temporal(address)
    logs = tmp_path / "logs"
    logs.mkdir()
    # Workers as processes only, on this test's own server: the control workers serve its
    # comfy-control queue, the stack only submits and reads.
    async with generation_stack(
        client,
        tmp_path,
        ManifestRegistry(manifests_dir, workflows_dir),
        address=address,
        api=False,
        control_worker=None,
        pool=pool,
    ) as stack:
        controls = [
            ControlWorkerProcess(
                f"control-{n}",
                address,
                logs,
                manifests_dir=manifests_dir,
                workflows_dir=workflows_dir,
                data_dir=stack.data_dir,
            )
            for n in ("a", "b")
        ]
        gpus = [
            GpuWorkerProcess(
                f"gpu-{n}", stack.data_dir, address, logs, pool=pool, shutdown_grace=30
            )
            for n in ("a", "b")
        ]
        exits: dict[str, list[int]] = {}
        open_at_restart: dict[str, int] = {}
        try:
            await asyncio.gather(*(w.start() for w in [*controls, *gpus]))
            prefixes: list[str] = []
            handles: list[WorkflowHandle] = []

            async def top_up() -> None:
                for _ in range(BACKLOG - await open_count(handles)):
                    prefix = new_prefix()
                    prefixes.append(prefix)
                    handles.append(
                        await submit_with_prefix(stack, prefix, steps=10, seconds_per_step=0.1)
                    )

            await top_up()
            for gpu in gpus:
                # SIGTERM while a job runs there: it finishes, a prefetched one is handed back.
                await wait_for(
                    lambda g=gpu: running_on(handles, g.name), f"a job on {gpu.name}", 60
                )
                await top_up()
                exits.setdefault(gpu.name, []).append(await gpu.terminate())
                open_at_restart[gpu.name] = await open_count(handles)
                await gpu.start()
            for control in controls:
                await top_up()
                exits.setdefault(control.name, []).append(await control.terminate())
                open_at_restart[control.name] = await open_count(handles)
                await control.start()
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 120)
        finally:
            for worker in [*gpus, *controls]:
                await worker.stop()
        tasks = [await stack.task(handle.id) for handle in handles]

    logs_of = {w.name: w.log_tail() for w in [*gpus, *controls]}
    assert exits == {w.name: [0] for w in [*gpus, *controls]}, logs_of
    # Jobs were still open when each worker had stopped: every restart hit a backlog in flight.
    assert all(count > 0 for count in open_at_restart.values()), open_at_restart
    output_dirs = [gpu.comfyui_output_dir for gpu in gpus]
    for handle, prefix, result, task in zip(handles, prefixes, results, tasks, strict=True):
        assert result.task_id == handle.id
        # The churn was the fleet's: no job spent any of its retries.
        assert result.attempts == 1, (handle.id, result)
        assert (task.status, task.attempts) == ("SUCCESS", 1)
        assert_stored_once(stack.data_dir, handle.id, [o.filename for o in result.outputs])
        assert (
            1
            <= comfyui_saves(output_dirs, prefix)
            <= result.attempts + result.infrastructure_retries
        )


async def test_a_job_outlives_more_worker_kills_than_its_retries(
    temporal_client: Client, temporal_address: str, tmp_path: Path
):
    pool = f"kills-{uuid.uuid4().hex[:8]}"
    workflows = SAMPLED_WORKFLOWS_YAML.format(pool=pool).replace("retries: 2", "retries: 0")
    registry = valid_registry(
        *write_manifest_dirs(
            tmp_path, SAMPLED_BASE_YAML, workflows, {"sampled_image.json": SAMPLED_IMAGE_GRAPH}
        )
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    async with generation_stack(
        temporal_client,
        tmp_path,
        registry,
        address=temporal_address,
        api=False,
        control_worker="own",
        pool=pool,
        emulator_args=["--cache-none"],
    ) as stack:
        workers = [
            GpuWorkerProcess(f"doomed-{n}", stack.data_dir, temporal_address, logs, pool=pool)
            for n in (1, 2)
        ]
        try:
            handle = await stack.submit({"steps": 40, "seconds_per_step": 0.05})
            for doomed in workers:
                await doomed.start()

                async def running_on_doomed(name: str = doomed.name) -> bool:
                    progress = await pending_progress(handle)
                    return bool(progress and progress.worker == name and progress.step)

                # The first after the job was queued, the second after the heartbeat timeout.
                await wait_for(running_on_doomed, f"the job to run on {doomed.name}", 60)
                waiting = await stack.task(handle.id)
                await doomed.kill()  # no goodbye: Temporal only notices the missing heartbeats
            await stack.start_gpu_worker("survivor")
            result = await asyncio.wait_for(handle.result(), 60)
        finally:
            for worker in workers:
                await worker.kill()
        done = await stack.task(handle.id)

    # While it ran on the second doomed worker, the first loss showed as an infrastructure fault.
    assert (waiting.status, waiting.attempts, waiting.infrastructure_retries) == ("PROGRESS", 1, 1)
    assert waiting.last_infrastructure_fault is not None
    assert waiting.last_infrastructure_fault.type == "WorkerLost"
    assert result.worker == "survivor"
    assert result.attempts == 1 and result.infrastructure_retries >= 2
    assert done.status == "SUCCESS" and done.result is not None and not isinstance(done.result, str)
    assert (done.attempts, done.result.attempts) == (1, 1)
    assert done.infrastructure_retries == done.result.infrastructure_retries >= 2
    assert done.last_infrastructure_fault is None
    assert_stored_once(stack.data_dir, handle.id, [o.filename for o in result.outputs])
