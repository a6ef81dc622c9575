"""POST /generate with an Idempotency-Key: one key, one task, one workflow run in Temporal."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from tests.support.temporal import StartedTasks

BODY: dict[str, Any] = {"workflow_id": "smoke_image", "params": {"width": 32, "height": 16}}


def _key() -> str:
    return f"test-{uuid.uuid4()}"


async def _runs_of(client: Client, task_id: str, *, at_least: int = 1) -> int:
    """How many runs Temporal's visibility lists under this workflow id (waits for the first)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        count = (await client.count_workflows(f"WorkflowId = '{task_id}'")).count
        if count >= at_least or asyncio.get_running_loop().time() > deadline:
            return count
        await asyncio.sleep(0.1)


async def test_repeat_with_the_same_key_returns_the_same_task_and_starts_no_second_run(
    http: httpx.AsyncClient, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    key = _key()
    first = await http.post("/generate", json=BODY, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    started_tasks.append(first.json()["task_id"])
    second = await http.post("/generate", json=BODY, headers={"Idempotency-Key": key})
    assert second.status_code == 202
    assert second.json() == first.json()
    assert await _runs_of(temporal_client, first.json()["task_id"]) == 1


async def test_same_key_with_a_different_body_is_409_naming_the_header(
    http: httpx.AsyncClient, started_tasks: StartedTasks
) -> None:
    key = _key()
    first = await http.post("/generate", json=BODY, headers={"Idempotency-Key": key})
    started_tasks.append(first.json()["task_id"])
    other = {**BODY, "params": {"width": 33, "height": 16}}
    response = await http.post("/generate", json=other, headers={"Idempotency-Key": key})
    assert response.status_code == 409
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["header", "Idempotency-Key"]
    assert first.json()["task_id"] in entry["msg"] and "different body" in entry["msg"]


async def test_same_key_for_another_workflow_is_409_not_a_second_task(
    http: httpx.AsyncClient, started_tasks: StartedTasks
) -> None:
    key = _key()
    first = await http.post("/generate", json=BODY, headers={"Idempotency-Key": key})
    started_tasks.append(first.json()["task_id"])
    other = {"workflow_id": "flux_wavespeed", "params": {"prompt": "a cat"}}
    response = await http.post("/generate", json=other, headers={"Idempotency-Key": key})
    assert response.status_code == 409


async def test_concurrent_identical_requests_make_one_workflow(
    http: httpx.AsyncClient, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    key = _key()
    responses = await asyncio.gather(
        *(http.post("/generate", json=BODY, headers={"Idempotency-Key": key}) for _ in range(6))
    )
    assert {r.status_code for r in responses} == {202}
    task_ids = {r.json()["task_id"] for r in responses}
    assert len(task_ids) == 1
    (task_id,) = task_ids
    started_tasks.append(task_id)
    assert await _runs_of(temporal_client, task_id) == 1


async def test_repeat_after_the_task_ended_returns_it_and_does_not_run_again(
    http: httpx.AsyncClient, temporal_client: Client
) -> None:
    key = _key()
    first = await http.post("/generate", json=BODY, headers={"Idempotency-Key": key})
    task_id = first.json()["task_id"]
    await temporal_client.get_workflow_handle(task_id).terminate(reason="ended for the test")
    again = await http.post("/generate", json=BODY, headers={"Idempotency-Key": key})
    assert again.status_code == 202 and again.json()["task_id"] == task_id
    desc = await temporal_client.get_workflow_handle(task_id).describe()
    assert desc.status == WorkflowExecutionStatus.TERMINATED  # the ended run, not a new one
    assert await _runs_of(temporal_client, task_id) == 1


async def test_different_keys_make_different_tasks(
    http: httpx.AsyncClient, started_tasks: StartedTasks
) -> None:
    a = await http.post("/generate", json=BODY, headers={"Idempotency-Key": _key()})
    b = await http.post("/generate", json=BODY, headers={"Idempotency-Key": _key()})
    started_tasks.extend([a.json()["task_id"], b.json()["task_id"]])
    assert a.json()["task_id"] != b.json()["task_id"]


async def test_without_a_key_each_request_is_a_new_task(
    http: httpx.AsyncClient, started_tasks: StartedTasks
) -> None:
    a = await http.post("/generate", json=BODY)
    b = await http.post("/generate", json=BODY)
    started_tasks.extend([a.json()["task_id"], b.json()["task_id"]])
    assert a.json()["task_id"] != b.json()["task_id"]


async def test_unusable_key_is_422_naming_the_header(http: httpx.AsyncClient) -> None:
    response = await http.post("/generate", json=BODY, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["header", "Idempotency-Key"]
    assert "255" in entry["msg"]
