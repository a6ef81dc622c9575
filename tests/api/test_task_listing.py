"""GET /tasks lists generations from Temporal visibility, filtered, newest first, page by page."""

from __future__ import annotations

import asyncio

import httpx
from temporalio.client import Client

from tests.support.temporal import StartedTasks


async def _listed(http: httpx.AsyncClient, params: dict[str, str], task_id: str) -> dict:
    """Visibility is eventually consistent: poll until the task shows up (or time out)."""
    async with asyncio.timeout(20):
        while True:
            body = (await http.get("/tasks", params=params)).json()
            if task_id in {t["task_id"] for t in body["tasks"]}:
                return body
            await asyncio.sleep(0.1)


async def test_listing_filters_by_workflow_and_status(
    http: httpx.AsyncClient, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    running = (await http.post("/generate", json={"workflow_id": "smoke_image"})).json()
    started_tasks.append(running["task_id"])
    ended = (await http.post("/generate", json={"workflow_id": "smoke_image"})).json()
    await temporal_client.get_workflow_handle(ended["task_id"]).terminate(reason="listing test")

    failed = await _listed(
        http, {"workflow_id": "smoke_image", "status": "FAILURE"}, ended["task_id"]
    )
    assert running["task_id"] not in {t["task_id"] for t in failed["tasks"]}
    assert {t["status"] for t in failed["tasks"]} == {"FAILURE"}
    pending = await _listed(
        http, {"workflow_id": "smoke_image", "status": "PENDING"}, running["task_id"]
    )
    assert ended["task_id"] not in {t["task_id"] for t in pending["tasks"]}


async def test_listing_pages_with_a_token(
    http: httpx.AsyncClient, started_tasks: StartedTasks
) -> None:
    for _ in range(3):
        task = (await http.post("/generate", json={"workflow_id": "smoke_image"})).json()
        started_tasks.append(task["task_id"])
    await _listed(http, {"workflow_id": "smoke_image"}, started_tasks[-1])
    first = (await http.get("/tasks", params={"page_size": "2"})).json()
    assert len(first["tasks"]) == 2 and first["next_page_token"]
    second = (
        await http.get("/tasks", params={"page_size": "2", "page_token": first["next_page_token"]})
    ).json()
    assert second["tasks"]
    assert not {t["task_id"] for t in first["tasks"]} & {t["task_id"] for t in second["tasks"]}


async def test_listing_refuses_a_filter_value_that_could_change_the_query(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/tasks", params={"workflow_id": "x' OR 1=1 --"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "workflow_id"]


async def test_listing_refuses_an_unknown_status(http: httpx.AsyncClient) -> None:
    response = await http.get("/tasks", params={"status": "DONE"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "status"]
