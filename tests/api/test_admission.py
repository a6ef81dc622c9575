"""Admission control: a pool whose GPU queue holds its maximum backlog refuses POST /generate with
429 and Retry-After, starting nothing, until jobs leave it; a schedule's run into a full pool is
skipped, and counted as skipped in the schedule."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.generation.admission import task_queue_stats
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.names import SA_POOL, pool_task_queue
from tests.support.manifests import IDLE_POOL_WORKFLOW_ID, idle_pool_registry
from tests.support.schedules import Schedules, wait_for_schedule, wait_for_task
from tests.support.stack import generation_stack
from tests.support.temporal import StartedTasks
from tests.support.waiting import wait_for

MAX_BACKLOG = 2
JOB = {"workflow_id": IDLE_POOL_WORKFLOW_ID}


class FullPool:
    """An API (with its control worker) limiting `pool` to MAX_BACKLOG jobs; no GPU worker
    polls the pool, so its jobs wait until they are cancelled."""

    def __init__(self, http: httpx.AsyncClient, client: Client, pool: str) -> None:
        self.http = http
        self.client = client
        self.pool = pool

    async def submit(self) -> httpx.Response:
        return await self.http.post("/generate", json=JOB)

    async def pool_task_ids(self) -> list[str]:
        query = f"{SA_POOL.name} = '{self.pool}'"
        return sorted([w.id async for w in self.client.list_workflows(query)])

    async def fill(self, started_tasks: StartedTasks) -> list[str]:
        """MAX_BACKLOG jobs, each accepted, and waiting in the pool's queue as Temporal counts."""
        task_ids = []
        for _ in range(MAX_BACKLOG):
            accepted = await self.submit()
            assert accepted.status_code == 202, accepted.text
            task_ids.append(accepted.json()["task_id"])
            started_tasks.append(task_ids[-1])

        async def queued() -> bool:
            stats = await task_queue_stats(self.client, pool_task_queue(self.pool))
            return stats.backlog >= MAX_BACKLOG

        await wait_for(queued, f"{MAX_BACKLOG} jobs in the pool's queue")
        return task_ids


@pytest_asyncio.fixture
async def full_pool(tmp_path: Path, temporal_client: Client) -> AsyncIterator[FullPool]:
    pool = f"full-{uuid.uuid4().hex[:8]}"
    async with (
        generation_stack(
            temporal_client, tmp_path, idle_pool_registry(tmp_path, pool), max_backlog=MAX_BACKLOG
        ) as stack,
        # A fresh connection per request: the server closes an idle keep-alive connection after
        # 5 s, and a submit made as it does so fails with ReadError (the waits here are seconds).
        httpx.AsyncClient(
            base_url=stack.url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        ) as http,
    ):
        yield FullPool(http, temporal_client, pool)


async def test_submit_beyond_the_max_backlog_is_429_with_retry_after_and_starts_nothing(
    full_pool: FullPool, started_tasks: StartedTasks
) -> None:
    waiting = await full_pool.fill(started_tasks)

    refused = await full_pool.submit()

    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    (entry,) = refused.json()["detail"]
    assert entry["type"] == "pool_full"
    assert f"pool '{full_pool.pool}' is full" in entry["msg"]
    assert entry["ctx"]["pool"] == full_pool.pool
    assert entry["ctx"]["max_backlog"] == MAX_BACKLOG
    assert entry["ctx"]["backlog"] >= MAX_BACKLOG
    assert await full_pool.pool_task_ids() == sorted(waiting)


async def test_submits_are_accepted_again_once_waiting_jobs_are_cancelled(
    full_pool: FullPool, started_tasks: StartedTasks
) -> None:
    waiting = await full_pool.fill(started_tasks)
    assert (await full_pool.submit()).status_code == 429
    for task_id in waiting:
        cancelled = await full_pool.http.post(f"/tasks/{task_id}/cancel")
        assert cancelled.status_code in (200, 202), cancelled.text

    async def accepted() -> httpx.Response | None:
        response = await full_pool.submit()
        if response.status_code == 429:
            return None  # the API's reading of the backlog is up to a second old
        return response

    response = await wait_for(accepted, "a submit to be accepted again", timeout=20, interval=0.2)
    assert response.status_code == 202, response.text
    started_tasks.append(response.json()["task_id"])


async def test_schedule_run_into_a_full_pool_is_skipped_and_counted(
    full_pool: FullPool, started_tasks: StartedTasks
) -> None:
    await full_pool.fill(started_tasks)
    schedules = Schedules(full_pool.http)
    try:
        created = await schedules.create(**JOB)
        schedule_id = created["schedule_id"]
        triggered = await full_pool.http.post(f"/schedules/{schedule_id}/trigger")
        assert triggered.status_code == 202, triggered.text

        def skipped_once(body: dict[str, Any]) -> bool:
            return body["num_skipped_pool_full"] == 1 and len(body["recent_runs"]) == 1

        body = await wait_for_schedule(full_pool.http, schedule_id, skipped_once)
        (run,) = body["recent_runs"]
        assert run["status"] == "CANCELLED"
        assert f"pool '{full_pool.pool}' is full" in run["skipped"]
        task = await wait_for_task(full_pool.http, run["task_id"])
        assert task["status"] == "CANCELLED"
        assert task["cancel_reason"] == run["skipped"]
        # The run queued nothing on a GPU, and its history replays (the patch marker included).
        history = await full_pool.client.get_workflow_handle(run["task_id"]).fetch_history()
        replayer = Replayer(workflows=[GenerationWorkflow], data_converter=pydantic_data_converter)
        assert (
            await replayer.replay_workflow(history, raise_on_replay_failure=False)
        ).replay_failure is None
        assert not [
            e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
        ]
    finally:
        await schedules.cleanup()


async def test_a_batch_that_does_not_fit_the_pool_is_429_and_starts_no_item(
    full_pool: FullPool, started_tasks: StartedTasks
) -> None:
    """Admission is all or none for a batch: with room for MAX_BACKLOG jobs, a batch of one more
    is refused whole; nothing of it starts."""
    items = [{} for _ in range(MAX_BACKLOG + 1)]

    refused = await full_pool.http.post(
        "/batches", json={"workflow_id": IDLE_POOL_WORKFLOW_ID, "items": items}
    )

    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    (entry,) = refused.json()["detail"]
    assert entry["type"] == "pool_full"
    assert entry["ctx"]["pool"] == full_pool.pool
    assert await full_pool.pool_task_ids() == []
