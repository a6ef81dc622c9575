"""`control-worker` and `gpu-worker` as real processes serve their metrics, the Temporal SDK's
included (labelled with the process), on --metrics-port / COMFY_METRICS_PORT."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.io.ports import free_port
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.names import CONTROL_TASK_QUEUE
from temporal_workflows.payloads import GenerationRequest
from tests.support.metrics import Scrape, scrape
from tests.support.waiting import wait_for
from tests.support.worker_processes import (
    COMFY_TEMPORAL,
    clean_environment,
    gpu_worker_command,
    kill_processes_mentioning,
)


async def scrape_when_up(url: str, ready: str) -> Scrape:
    """Scrape `url` until it answers with a sample named `ready` (the process is starting)."""

    async def answered() -> Scrape | None:
        try:
            found = await scrape(url)
        except httpx.HTTPError:
            return None
        return found if found.matching(ready) else None

    result: Scrape = await wait_for(answered, f"{url} to serve {ready}", 60)
    return result


async def stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        return await process.wait()


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        await stop(process)


async def test_control_worker_serves_job_counts_and_sdk_metrics_on_its_metrics_port(
    temporal_client: Client,
    temporal_address: str,
    tmp_path: Path,
    processes: list[asyncio.subprocess.Process],
):
    (tmp_path / "workflows.yaml").write_text("{}\n")
    port = free_port()
    env = clean_environment()
    env.update(
        TEMPORAL_ADDRESS=temporal_address, MANIFESTS_DIR=str(tmp_path), COMFY_METRICS_PORT=str(port)
    )
    processes.append(
        await asyncio.create_subprocess_exec(
            COMFY_TEMPORAL,
            "control-worker",
            "--workflows",
            str(tmp_path),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    )
    url = f"http://127.0.0.1:{port}/metrics"
    await scrape_when_up(url, "temporal_worker_task_slots_available")
    handle = await temporal_client.start_workflow(
        GenerationWorkflow.run,
        GenerationRequest(workflow_id="no_such_workflow"),
        id=f"gen-{uuid.uuid4()}",
        task_queue=CONTROL_TASK_QUEUE,
    )
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 30)

    metrics = await scrape(url)
    assert (
        metrics.value("comfy_generations_total", workflow="no_such_workflow", status="FAILURE") == 1
    )
    assert metrics.total("comfy_generations_total") == 1
    sdk = [s for s in metrics.samples if s.name.startswith("temporal_")]
    assert sdk and all(s.labels.get("process") == "control-worker" for s in sdk)


async def test_gpu_worker_serves_comfyui_health_and_sdk_metrics_on_its_metrics_port(
    temporal_address: str, tmp_path: Path, processes: list[asyncio.subprocess.Process]
):
    name = f"gpu-metrics-{uuid.uuid4().hex[:6]}"
    port = free_port()
    command = gpu_worker_command(
        pool=f"metrics-{uuid.uuid4().hex[:8]}",
        name=name,
        data_dir=tmp_path,
        temporal_address=temporal_address,
        shutdown_grace=5,
    )
    try:
        processes.append(
            await asyncio.create_subprocess_exec(
                *command,
                "--metrics-port",
                str(port),
                env=clean_environment(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        )
        url = f"http://127.0.0.1:{port}/metrics"
        # Pollers are reported once the Workers poll, which they do only with ComfyUI healthy.
        # (Their activity slots are the GPU's own, prefetch_slots.py, which the SDK does not
        # count as slots: comfy_jobs_in_progress says how many jobs the GPU holds.)
        metrics = await scrape_when_up(url, "temporal_num_pollers")
        assert metrics.value("comfy_comfyui_up", worker=name) == 1
        assert metrics.total("comfy_comfyui_restarts_total", worker=name) == 0
        assert metrics.total("comfy_gpu_memory_total_bytes", worker=name) > 0
        sdk = [s for s in metrics.samples if s.name.startswith("temporal_")]
        assert sdk and all(s.labels.get("process") == f"gpu-worker:{name}" for s in sdk)
        assert await stop(processes.pop()) == 0
    finally:
        kill_processes_mentioning(str(tmp_path / "comfyui" / name))
