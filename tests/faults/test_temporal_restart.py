"""The Temporal server stopped (SIGTERM) and started again on the same database and port while a
backlog is in flight: every job still completes, once, with exactly its files."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus

from activities.workers.temporal_client import connect_temporal
from manifests.registry import ManifestRegistry
from tests.support.manifests import write_fault_manifests
from tests.support.outputs import assert_stored_once, comfyui_saves, new_prefix, submit_with_prefix
from tests.support.stack import generation_stack
from tests.support.temporal import RestartableDevServer
from tests.support.waiting import wait_for

JOBS = 8


async def test_a_backlog_survives_a_temporal_server_restart_and_each_job_succeeds_once(
    own_dev_server: RestartableDevServer, tmp_path: Path
):
    pool = f"restart-{uuid.uuid4().hex[:8]}"
    registry = ManifestRegistry(*write_fault_manifests(tmp_path, pool))
    client = await connect_temporal(own_dev_server.address)
    async with generation_stack(
        client,
        tmp_path,
        registry,
        address=own_dev_server.address,
        api=False,
        control_worker="own",
        pool=pool,
        emulator_args=["--cache-none"],
    ) as stack:
        gpus = [await stack.start_gpu_worker(f"gpu-{n}") for n in ("a", "b")]
        prefixes = [new_prefix() for _ in range(JOBS)]
        # About 1 s of ComfyUI time each: 4 s of backlog on two GPUs.
        handles = [
            await submit_with_prefix(stack, prefix, steps=10, seconds_per_step=0.1)
            for prefix in prefixes
        ]

        async def closed_count() -> int:
            statuses = [(await h.describe()).status for h in handles]
            return sum(s != WorkflowExecutionStatus.RUNNING for s in statuses)

        await wait_for(closed_count, "the first job to finish", 60)
        closed_before = await closed_count()
        await own_dev_server.restart()

        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 90)

    assert own_dev_server.restarts == 1
    assert closed_before < JOBS  # the restart really hit a backlog in flight
    output_dirs = [gpu.emulator.output_dir for gpu in gpus]
    for handle, prefix, result in zip(handles, prefixes, results, strict=True):
        assert result.task_id == handle.id
        assert_stored_once(stack.data_dir, handle.id, [o.filename for o in result.outputs])
        # ComfyUI ran the job once per attempt at most (a result reported while the server was
        # down may be retried after a heartbeat timeout; it is still stored once).
        assert (
            1
            <= comfyui_saves(output_dirs, prefix)
            <= result.attempts + result.infrastructure_retries
        )
