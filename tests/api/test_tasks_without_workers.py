"""GET /tasks/{id} and friends while no worker runs: 404s, PENDING, cancel."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from temporal_workflows.names import GENERATION_WORKFLOW, REQUEST_MEMO
from tests.support.manifests import IDLE_POOL_WORKFLOW_ID
from tests.support.stack import api_without_gpu_workers
from tests.support.temporal import StartedTasks
from tests.support.waiting import poll_task


async def test_unknown_task_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/tasks/smoke_image-20990101-000000-abcdef")
    assert response.status_code == 404
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


async def test_accepted_job_is_a_temporal_workflow_with_a_readable_id(
    http: httpx.AsyncClient, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "smoke_image", "params": {"width": 16}}
    )
    assert response.status_code == 202
    body = response.json()
    started_tasks.append(body["task_id"])
    assert body["task_id"].startswith("smoke_image-")
    assert body["status_url"].endswith(f"/tasks/{body['task_id']}")
    desc = await temporal_client.get_workflow_handle(body["task_id"]).describe()
    assert desc.workflow_type == GENERATION_WORKFLOW
    assert desc.status == WorkflowExecutionStatus.RUNNING
    assert await desc.static_summary() == "smoke_image: width=16"
    assert (await desc.memo_value(REQUEST_MEMO))["params"] == {"width": 16}


async def test_job_without_workers_reads_pending(
    http: httpx.AsyncClient, started_tasks: StartedTasks
) -> None:
    task_id = (await http.post("/generate", json={"workflow_id": "smoke_image"})).json()["task_id"]
    started_tasks.append(task_id)
    response = await http.get(f"/tasks/{task_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["workflow_id"] == "smoke_image"
    assert body["queue"]["phase"] in ("preparing", "waiting_for_gpu_worker")


async def test_terminated_job_reads_failure_with_the_reason(
    http: httpx.AsyncClient, temporal_client: Client
) -> None:
    task_id = (await http.post("/generate", json={"workflow_id": "smoke_image"})).json()["task_id"]
    await temporal_client.get_workflow_handle(task_id).terminate(reason="operator said so")
    body = (await http.get(f"/tasks/{task_id}")).json()
    assert body["status"] == "FAILURE"
    assert "operator said so" in body["result"]
    assert body["error"]["type"] == "Terminated"


async def test_cancel_of_a_finished_job_is_a_clear_no_op(
    http: httpx.AsyncClient, temporal_client: Client
) -> None:
    task_id = (await http.post("/generate", json={"workflow_id": "smoke_image"})).json()["task_id"]
    await temporal_client.get_workflow_handle(task_id).terminate(reason="done with it")
    response = await http.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 200
    body = response.json()
    assert body["cancel_requested"] is False
    assert "already finished" in body["message"]


async def test_cancel_of_an_unknown_task_is_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/tasks/nope-20990101-000000-abcdef/cancel")
    assert response.status_code == 404


async def test_cancel_of_a_running_job_is_accepted_and_requested_in_temporal(
    http: httpx.AsyncClient, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    task_id = (await http.post("/generate", json={"workflow_id": "smoke_image"})).json()["task_id"]
    started_tasks.append(task_id)
    response = await http.post(f"/tasks/{task_id}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    history = await temporal_client.get_workflow_handle(task_id).fetch_history()
    assert any(
        e.HasField("workflow_execution_cancel_requested_event_attributes") for e in history.events
    )


async def test_requested_priority_becomes_the_workflows_temporal_priority(
    http: httpx.AsyncClient, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "smoke_image", "options": {"priority": 1}}
    )
    task_id = response.json()["task_id"]
    started_tasks.append(task_id)
    desc = await temporal_client.get_workflow_handle(task_id).describe()
    assert desc.raw_description.workflow_execution_info.priority.priority_key == 1


async def test_prompt_makes_the_web_ui_summary(
    http: httpx.AsyncClient, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    prompt = "a majestic cat on a throne, epic scene, masterpiece, golden light, 8k, detailed fur"
    response = await http.post(
        "/generate", json={"workflow_id": "flux_wavespeed", "params": {"prompt": prompt}}
    )
    task_id = response.json()["task_id"]
    started_tasks.append(task_id)
    summary = await temporal_client.get_workflow_handle(task_id).describe()
    assert await summary.static_summary() == f'flux_wavespeed: "{prompt[:60]}…"'


async def test_job_cancelled_while_waiting_for_a_gpu_never_reads_progress(
    tmp_path: Path, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    """Between the GPU step's cancellation and the run's close, the workflow already answers
    "done"; a job that never ran must still read PENDING there. The window is short, so several
    jobs are each read as fast as the API answers while they are cancelled."""
    pool = f"idle-{uuid.uuid4().hex[:8]}"
    async with api_without_gpu_workers(tmp_path, temporal_client, pool) as http:
        task_ids = []
        for _ in range(4):
            accepted = await http.post("/generate", json={"workflow_id": IDLE_POOL_WORKFLOW_ID})
            assert accepted.status_code == 202, accepted.text
            task_ids.append(accepted.json()["task_id"])
        started_tasks.extend(task_ids)
        for task_id in task_ids:
            await poll_task(
                http,
                task_id,
                lambda b: (b.get("queue") or {}).get("phase") == "waiting_for_gpu_worker",
                timeout=30,
            )

        async def statuses_until_cancelled(task_id: str) -> list[str]:
            seen: list[str] = []
            async with asyncio.timeout(30):
                while not seen or seen[-1] != "CANCELLED":
                    seen.append((await http.get(f"/tasks/{task_id}")).json()["status"])
            return seen

        for task_id in task_ids:
            reading = asyncio.create_task(statuses_until_cancelled(task_id))
            answer = await http.post(f"/tasks/{task_id}/cancel")
            assert answer.status_code == 202, answer.text
            seen = await reading
            assert "PROGRESS" not in seen, (task_id, seen)
