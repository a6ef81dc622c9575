"""Prometheus metrics after real jobs: the API's GET /metrics (with its embedded control worker and
the Temporal SDK's metrics) and a GPU worker's endpoint parse as Prometheus text and count every
outcome exactly once; a ComfyUI crash and an out-of-memory failure are counted on the GPU worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import httpx
from temporalio.client import Client, WorkflowFailureError

from temporal_workflows.names import STATUS_QUERY
from tests.support.graphs import SAMPLED_IMAGE_GRAPH
from tests.support.metrics import METRICS_API_KEY, MetricsStack, Scrape, scrape
from tests.support.waiting import poll_task

WORKFLOW = "sampled_image"
GIB = 1024**3
# The emulator runs with --cache-none, so every node of the graph runs in every job.
NODES_PER_JOB = Counter(node["class_type"] for node in SAMPLED_IMAGE_GRAPH.values())


def node_counts(gpu: Scrape) -> dict[str, float | None]:
    """comfy_node_seconds observations per class_type of the test graph."""
    return {c: gpu.value("comfy_node_seconds_count", class_type=c) for c in NODES_PER_JOB}


async def submit(http: httpx.AsyncClient, params: dict[str, Any], **options: Any) -> str:
    body = {"workflow_id": WORKFLOW, "params": params, **options}
    response = await http.post("/generate", json=body)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def wait_closed(client: Client, task_id: str) -> None:
    """Until the job's workflow closed: its outcome is counted in its last workflow task."""
    with contextlib.suppress(WorkflowFailureError):  # FAILURE and CANCELLED end this way
        await asyncio.wait_for(client.get_workflow_handle(task_id).result(), 60)


async def scrape_api(stack: MetricsStack) -> Scrape:
    return await scrape(f"{stack.api_url}/metrics", **{"X-API-Key": METRICS_API_KEY})


async def test_each_outcome_is_counted_once_on_the_api_and_the_gpu_worker(
    metrics_stack: MetricsStack, temporal_client: Client
):
    stack = metrics_stack
    async with stack.api() as http:
        succeeded = await submit(http, {}, callback_url=stack.webhooks.url)
        await wait_closed(temporal_client, succeeded)
        # EmptyImage takes at most 16384: the manifest allows more, ComfyUI refuses it.
        refused = await submit(http, {"width": 20000})
        await wait_closed(temporal_client, refused)
        await stack.emulator.set_faults(
            fail_on_node="EmulatorSampler", exception_type="RuntimeError", exception_message="x"
        )
        failed = await submit(http, {})
        await wait_closed(temporal_client, failed)
        await stack.emulator.set_faults()
        cancelled = await submit(http, {"steps": 20, "seconds_per_step": 1.0})
        await poll_task(http, cancelled, lambda task: task["status"] == "PROGRESS")
        assert (await http.post(f"/tasks/{cancelled}/cancel")).status_code == 202
        await wait_closed(temporal_client, cancelled)
        statuses = [(await http.get(f"/tasks/{t}")).json()["status"] for t in (refused, failed)]
        assert statuses == ["FAILURE", "FAILURE"]
        assert (await http.get("/metrics", headers={"X-API-Key": ""})).status_code == 401
    # A query on an ended job replays its whole history, end included: that counts nothing.
    for task_id in (succeeded, refused, failed, cancelled):
        await temporal_client.get_workflow_handle(task_id).query(STATUS_QUERY)

    api = await scrape_api(stack)
    outcomes = {
        status: api.value("comfy_generations_total", workflow=WORKFLOW, status=status)
        for status in ("SUCCESS", "FAILURE", "CANCELLED")
    }
    assert outcomes == {"SUCCESS": 1, "FAILURE": 2, "CANCELLED": 1}
    assert api.value("comfy_generation_duration_seconds_count", workflow=WORKFLOW) == 4
    assert api.value("comfy_webhook_deliveries_total", outcome="delivered") == 1
    assert api.total("comfy_webhook_deliveries_total") == 1
    assert len(stack.webhooks.received) == 1
    assert api.value("comfy_http_requests_total", route="/generate", status="202") == 4
    assert api.value("comfy_http_requests_total", route="/tasks/{task_id}/cancel") == 1
    assert api.value("comfy_http_requests_total", route="/metrics", status="401") == 1
    assert api.total("comfy_http_request_duration_seconds_count", route="/tasks/{task_id}") >= 2
    assert api.value("comfy_backlog", pool=stack.pool) == 0
    sdk = [s for s in api.samples if s.name.startswith("temporal_")]
    assert sdk and all(s.labels.get("process") == "api" for s in sdk)
    assert api.value("temporal_workflow_completed_total", task_queue="comfy-control") == 1

    gpu = await scrape(stack.gpu_metrics_url)
    worker = stack.worker
    assert gpu.value("comfy_queue_wait_seconds_count", pool=stack.pool) == 4
    assert gpu.value("comfy_execution_seconds_count", workflow=WORKFLOW, worker=worker) == 1
    assert gpu.value("comfy_jobs_in_progress", worker=worker) == 0
    assert gpu.value("comfy_oom_total", worker=worker) == 0
    assert gpu.total("comfy_comfyui_restarts_total", worker=worker) == 0
    assert gpu.value("comfy_comfyui_up", worker=worker) == 1
    assert gpu.total("comfy_gpu_memory_total_bytes", worker=worker) == 16 * GIB  # the emulator's
    # One observation per node of the one successful job: refused, failed and cancelled jobs
    # are not observed.
    assert node_counts(gpu) == dict(NODES_PER_JOB)
    assert gpu.total("comfy_node_seconds_count") == NODES_PER_JOB.total()


async def test_a_comfyui_crash_counts_one_restart_and_the_retried_attempt(
    metrics_stack: MetricsStack, temporal_client: Client
):
    stack = metrics_stack
    # The emulator exits when the sampler starts; its replacement starts without the fault.
    await stack.emulator.set_faults(crash_on_node="EmulatorSampler")
    async with stack.api() as http:
        task_id = await submit(http, {})
        await wait_closed(temporal_client, task_id)
        assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "SUCCESS"

    gpu = await scrape(stack.gpu_metrics_url)
    worker = stack.worker
    assert gpu.value("comfy_comfyui_restarts_total", worker=worker, reason="exited") == 1
    assert gpu.total("comfy_comfyui_restarts_total", worker=worker) == 1
    assert gpu.value("comfy_comfyui_up", worker=worker) == 1
    assert gpu.value("comfy_queue_wait_seconds_count", pool=stack.pool) == 2  # two attempts
    assert node_counts(gpu) == dict(NODES_PER_JOB)  # the attempt that crashed is not observed
    api = await scrape_api(stack)
    assert api.total("comfy_generations_total") == 1


async def test_an_out_of_memory_attempt_is_counted(
    metrics_stack: MetricsStack, temporal_client: Client
):
    stack = metrics_stack
    await stack.emulator.set_faults(
        fail_on_node="EmulatorSampler",
        fail_once=True,
        exception_type="torch.OutOfMemoryError",
        exception_message="CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    async with stack.api() as http:
        task_id = await submit(http, {})
        await wait_closed(temporal_client, task_id)

    gpu = await scrape(stack.gpu_metrics_url)
    assert gpu.value("comfy_oom_total", worker=stack.worker) == 1
    assert gpu.value("comfy_execution_seconds_count", workflow=WORKFLOW, worker=stack.worker) == 1
    assert node_counts(gpu) == dict(NODES_PER_JOB)
    api = await scrape_api(stack)
    assert api.value("comfy_generations_total", workflow=WORKFLOW, status="SUCCESS") == 1
