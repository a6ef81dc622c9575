"""A job whose GPU pool has no worker reads PENDING, naming its queue and that queue's backlog."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from temporalio.client import Client

from tests.api.conftest import StartedTasks
from tests.api.stack import IDLE_POOL_WORKFLOW_ID, api_without_gpu_workers


async def test_job_waiting_for_a_gpu_worker_shows_queue_and_backlog(
    tmp_path: Path, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    pool = f"idle-{uuid.uuid4().hex[:8]}"
    async with api_without_gpu_workers(tmp_path, temporal_client, pool) as http:
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
    assert queue["task_queue"] == f"comfy-gpu-{pool}"
    assert queue["backlog"] >= 1
    assert queue["waiting_seconds"] >= 0
