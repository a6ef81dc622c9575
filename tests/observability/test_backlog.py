"""comfy_backlog comes from Temporal's task-queue statistics: jobs waiting on a pool nobody polls
show in it, and an API started afresh reads the same number on its first scrape."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from tests.support.manifests import IDLE_POOL_WORKFLOW_ID
from tests.support.metrics import Scrape
from tests.support.stack import api_without_gpu_workers


async def backlog(http: httpx.AsyncClient, pool: str) -> float | None:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text).value("comfy_backlog", pool=pool)


async def test_backlog_counts_waiting_jobs_and_survives_an_api_restart(
    tmp_path: Path, temporal_client: Client
):
    pool = f"idle-{uuid.uuid4().hex[:8]}"
    task_ids: list[str] = []
    try:
        async with api_without_gpu_workers(tmp_path / "first", temporal_client, pool) as http:
            for _ in range(2):
                accepted = await http.post("/generate", json={"workflow_id": IDLE_POOL_WORKFLOW_ID})
                assert accepted.status_code == 202, accepted.text
                task_ids.append(accepted.json()["task_id"])
            async with asyncio.timeout(30):  # the statistics follow the queue within moments
                while await backlog(http, pool) != 2:
                    await asyncio.sleep(0.1)
        async with api_without_gpu_workers(tmp_path / "second", temporal_client, pool) as http:
            assert await backlog(http, pool) == 2
    finally:
        for task_id in task_ids:
            await temporal_client.get_workflow_handle(task_id).terminate(reason="test finished")
