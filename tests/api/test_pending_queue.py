"""A job whose GPU pool has no worker reads PENDING, naming its queue and that queue's backlog."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from temporal_workflows.names import EXECUTE_ACTIVITY, pool_task_queue
from temporal_workflows.payloads import ExecuteInput, ExecuteResult
from tests.support.manifests import IDLE_POOL_WORKFLOW_ID, idle_pool_registry
from tests.support.stack import generation_stack
from tests.support.temporal import StartedTasks


async def test_job_waiting_for_a_gpu_worker_shows_queue_and_backlog(
    tmp_path: Path, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    pool = f"idle-{uuid.uuid4().hex[:8]}"
    async with (
        generation_stack(temporal_client, tmp_path, idle_pool_registry(tmp_path, pool)) as stack,
        httpx.AsyncClient(base_url=stack.url) as http,
    ):
        accepted = await http.post("/generate", json={"workflow_id": IDLE_POOL_WORKFLOW_ID})
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["task_id"]
        started_tasks.append(task_id)
        async with asyncio.timeout(20):
            while True:
                body = (await http.get(f"/tasks/{task_id}")).json()
                assert body["status"] == "PENDING", body
                if body["queue"]["phase"] == "waiting_for_gpu_worker":
                    break
                await asyncio.sleep(0.05)
    queue = body["queue"]
    assert queue["task_queue"] == pool_task_queue(pool)
    assert queue["backlog"] >= 1
    assert queue["waiting_seconds"] >= 0


async def test_job_a_gpu_worker_took_but_comfyui_does_not_run_yet_stays_pending(
    tmp_path: Path, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    # PROGRESS means ComfyUI runs the prompt: a worker that holds the job before its first
    # heartbeat (still submitting it) must not make the status read PROGRESS, then PENDING again.
    pool = f"idle-{uuid.uuid4().hex[:8]}"
    picked_up = asyncio.Event()
    release = asyncio.Event()

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt_without_heartbeat(request: ExecuteInput) -> ExecuteResult:
        picked_up.set()
        await release.wait()
        return ExecuteResult(outputs=[], worker="stand-in", comfy_prompt_id="p", attempt=1)

    async with (
        generation_stack(temporal_client, tmp_path, idle_pool_registry(tmp_path, pool)) as stack,
        httpx.AsyncClient(base_url=stack.url) as http,
    ):
        accepted = await http.post("/generate", json={"workflow_id": IDLE_POOL_WORKFLOW_ID})
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["task_id"]
        started_tasks.append(task_id)
        async with Worker(
            temporal_client,
            task_queue=pool_task_queue(pool),
            activities=[execute_prompt_without_heartbeat],
        ):
            async with asyncio.timeout(20):
                await picked_up.wait()
                while True:
                    body = (await http.get(f"/tasks/{task_id}")).json()
                    if (body.get("queue") or {}).get("phase") == "submitting_to_comfyui":
                        break
                    assert body["status"] == "PENDING", body
                    await asyncio.sleep(0.05)
            release.set()
            async with asyncio.timeout(20):
                while (await http.get(f"/tasks/{task_id}")).json()["status"] != "SUCCESS":
                    await asyncio.sleep(0.05)
    assert body["status"] == "PENDING"
    assert "progress" not in body or body["progress"] is None
