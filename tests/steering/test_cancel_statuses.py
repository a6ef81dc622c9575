"""What GET /tasks/{id} reads while a job that runs in ComfyUI is being cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from tests.support.manifests import EMULATOR_WORKFLOW_ID
from tests.support.waiting import poll_task

Submit = Callable[..., Awaitable[str]]


async def test_running_job_reads_progress_until_cancelled(
    http: httpx.AsyncClient, submit: Submit
) -> None:
    """Once ComfyUI ran the prompt the status never goes back to PENDING, also in the moment
    between the GPU step's cancellation and the run's close."""
    task_id = await submit(EMULATOR_WORKFLOW_ID, steps=40, seconds_per_step=0.1)
    await poll_task(
        http,
        task_id,
        lambda b: b["status"] == "PROGRESS" and ((b.get("progress") or {}).get("step") or 0) > 0,
        timeout=60,
    )

    async def statuses_until_cancelled() -> list[str]:
        seen: list[str] = []
        async with asyncio.timeout(60):
            while not seen or seen[-1] not in ("CANCELLED", "SUCCESS", "FAILURE"):
                seen.append((await http.get(f"/tasks/{task_id}")).json()["status"])
        return seen

    reading = asyncio.create_task(statuses_until_cancelled())
    answer = await http.post(f"/tasks/{task_id}/cancel")
    assert answer.status_code == 202, answer.text
    seen = await reading
    assert seen[-1] == "CANCELLED", seen
    assert set(seen) == {"PROGRESS", "CANCELLED"} or seen == ["CANCELLED"], seen
