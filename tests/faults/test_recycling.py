"""ComfyUI recycled before it leaks: a GPU worker past a memory limit, or a job count, restarts its
ComfyUI between jobs (after finishing the jobs it holds), and no job fails or is retried for it.
The emulator's `--leak-mb-per-prompt` makes its memory grow per prompt."""

from __future__ import annotations

import asyncio
import logging

import pytest

from activities.workers.recycling import RecyclePolicy
from tests.support.outputs import assert_stored_once, comfyui_saves, new_prefix, submit_with_prefix
from tests.support.stack import GenerationStack, RunningGpuWorker
from tests.support.waiting import wait_for

# The emulator starts at ~40 MiB resident: two leaking prompts take it past the limit.
LEAK_MB = 48
RSS_LIMIT_MB = 120
# It reports 4 GiB of VRAM in use before any leak.
VRAM_BASE_MB = 4096


def leaking(mb: int = LEAK_MB) -> list[str]:
    return ["--cache-none", "--leak-mb-per-prompt", str(mb)]


async def settled(gpu: RunningGpuWorker) -> None:
    """Until the worker recycled its ComfyUI at least once (a measure may still run after the
    last job) and polls again, its ComfyUI having counted every restart the worker asked for."""

    async def polling_again() -> bool:
        asked = gpu.worker.recycles.total()
        process = gpu.emulator.process
        return asked >= 1 and gpu.worker.polling.is_set() and process.recycles == asked

    await wait_for(polling_again, "the worker to poll again after recycling")


def restarts_counted(gpu: RunningGpuWorker, reason: str) -> float:
    """comfy_comfyui_restarts_total{reason=...} of the worker's metrics."""
    value = gpu.worker.metrics.registry.get_sample_value(
        "comfy_comfyui_restarts_total", {"worker": gpu.name, "reason": reason}
    )
    return value or 0.0


def recycle_log_lines(caplog: pytest.LogCaptureFixture, kind: str) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if f"recycling ComfyUI ({kind})" in r.getMessage()
    ]


async def run_jobs_at_once(stack: GenerationStack, gpu: RunningGpuWorker, count: int) -> None:
    """Submit `count` jobs together (the worker prefetches, so one is queued in ComfyUI whenever
    a recycle falls due) and check each succeeded on its first attempt, stored once."""
    prefixes = [new_prefix() for _ in range(count)]
    handles = [await submit_with_prefix(stack, prefix) for prefix in prefixes]
    results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 120)
    assert [r.attempts for r in results] == [1] * count
    for handle, prefix, result in zip(handles, prefixes, results, strict=True):
        assert result.worker == gpu.name
        assert_stored_once(stack.data_dir, handle.id, [o.filename for o in result.outputs])
        assert comfyui_saves([gpu.emulator.output_dir], prefix) == 1


async def test_worker_over_its_memory_limit_recycles_comfyui_and_every_job_succeeds_first_time(
    fault_stack: GenerationStack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    gpu = await fault_stack.start_gpu_worker(
        "gpu-rss", extra_args=leaking(), recycle=RecyclePolicy(rss_mb=RSS_LIMIT_MB)
    )
    first_pid = gpu.emulator.process.pid

    await run_jobs_at_once(fault_stack, gpu, 4)
    await settled(gpu)

    assert gpu.worker.recycles["rss"] >= 1
    assert gpu.emulator.process.restarts == 0  # a planned restart, not a crash
    assert gpu.emulator.process.pid != first_pid
    assert restarts_counted(gpu, "recycled_rss") == gpu.worker.recycles["rss"]
    assert restarts_counted(gpu, "exited") == 0
    lines = recycle_log_lines(caplog, "rss")
    assert lines and f"limit {RSS_LIMIT_MB} MiB" in lines[0], lines


async def test_worker_recycles_comfyui_after_the_configured_number_of_jobs(
    fault_stack: GenerationStack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    gpu = await fault_stack.start_gpu_worker("gpu-jobs", recycle=RecyclePolicy(after_jobs=2))

    await run_jobs_at_once(fault_stack, gpu, 4)
    await settled(gpu)

    # Two jobs, or three when a prefetched one was already queued when the limit was reached.
    assert 1 <= gpu.worker.recycles["jobs"] <= 2
    assert gpu.emulator.process.recycles == gpu.worker.recycles["jobs"]
    assert restarts_counted(gpu, "recycled_jobs") == gpu.worker.recycles["jobs"]
    assert gpu.emulator.process.restarts == 0
    lines = recycle_log_lines(caplog, "jobs")
    assert lines and "limit 2" in lines[0], lines


async def test_worker_recycles_comfyui_holding_too_much_vram_while_idle(
    fault_stack: GenerationStack, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    gpu = await fault_stack.start_gpu_worker(
        "gpu-vram", extra_args=leaking(32), recycle=RecyclePolicy(vram_mb=VRAM_BASE_MB + 48)
    )
    # One job at a time, so ComfyUI is idle when each ends: 32 MiB, then 64 MiB over the base.
    for _ in range(3):
        await run_jobs_at_once(fault_stack, gpu, 1)
    await settled(gpu)

    assert gpu.worker.recycles["vram"] == 1
    assert restarts_counted(gpu, "recycled_vram") == 1
    assert gpu.emulator.process.restarts == 0
    lines = recycle_log_lines(caplog, "vram")
    assert lines and f"while idle (limit {VRAM_BASE_MB + 48} MiB)" in lines[0], lines
