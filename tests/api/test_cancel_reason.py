"""A cancelled task shows why: `result` reads "cancelled: <reason>" and `cancel_reason` holds the
reason, read from the run's history, so it shows with no control worker running."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from temporalio.client import Client

from temporal_workflows.names import CANCEL_SIGNAL
from tests.support.manifests import IDLE_POOL_WORKFLOW_ID
from tests.support.stack import api_without_gpu_workers
from tests.support.temporal import StartedTasks, batch_cancel
from tests.support.waiting import poll_task


async def _cancelled_while_waiting(
    tmp_path: Path,
    temporal_client: Client,
    started_tasks: StartedTasks,
    cancel: Callable[[httpx.AsyncClient, str], Awaitable[None]],
    pool: str | None = None,
) -> str:
    """Start a job on `pool` (default: a fresh one), cancel it (by `cancel`) while it waits for a
    GPU, wait until it is CANCELLED, then stop the API and its control worker; returns the task
    id."""
    pool = pool or f"idle-{uuid.uuid4().hex[:8]}"
    async with api_without_gpu_workers(tmp_path, temporal_client, pool) as http:
        accepted = await http.post("/generate", json={"workflow_id": IDLE_POOL_WORKFLOW_ID})
        assert accepted.status_code == 202, accepted.text
        task_id: str = accepted.json()["task_id"]
        started_tasks.append(task_id)
        await poll_task(
            http,
            task_id,
            lambda b: (b.get("queue") or {}).get("phase") == "waiting_for_gpu_worker",
            timeout=30,
        )
        await cancel(http, task_id)
        await poll_task(http, task_id, lambda b: b["status"] != "PENDING", timeout=30)
    return task_id


async def test_reason_given_to_the_cancel_endpoint_is_shown(
    tmp_path: Path, temporal_client: Client, started_tasks: StartedTasks, http: httpx.AsyncClient
) -> None:
    async def cancel_by_api(api: httpx.AsyncClient, task_id: str) -> None:
        answer = await api.post(f"/tasks/{task_id}/cancel", params={"reason": "wrong prompt"})
        assert answer.status_code == 202, answer.text

    task_id = await _cancelled_while_waiting(
        tmp_path, temporal_client, started_tasks, cancel_by_api
    )
    # Read through an API with no control worker: the reason comes from history.
    body = (await http.get(f"/tasks/{task_id}")).json()
    assert body["status"] == "CANCELLED"
    assert body["result"] == "cancelled: wrong prompt"
    assert body["cancel_reason"] == "wrong prompt"


async def test_reason_given_to_the_cancel_signal_is_shown(
    tmp_path: Path, temporal_client: Client, started_tasks: StartedTasks, http: httpx.AsyncClient
) -> None:
    async def cancel_by_signal(api: httpx.AsyncClient, task_id: str) -> None:
        await temporal_client.get_workflow_handle(task_id).signal(CANCEL_SIGNAL, "too dark")

    task_id = await _cancelled_while_waiting(
        tmp_path, temporal_client, started_tasks, cancel_by_signal
    )
    body = (await http.get(f"/tasks/{task_id}")).json()
    assert body["status"] == "CANCELLED"
    assert body["result"] == "cancelled: too dark"
    assert body["cancel_reason"] == "too dark"


async def test_cancel_without_a_reason_reads_just_cancelled(
    tmp_path: Path, temporal_client: Client, started_tasks: StartedTasks, http: httpx.AsyncClient
) -> None:
    async def cancel_through_temporal(api: httpx.AsyncClient, task_id: str) -> None:
        await temporal_client.get_workflow_handle(task_id).cancel()  # `temporal workflow cancel`

    task_id = await _cancelled_while_waiting(
        tmp_path, temporal_client, started_tasks, cancel_through_temporal
    )
    body = (await http.get(f"/tasks/{task_id}")).json()
    assert body["status"] == "CANCELLED"
    assert body["result"] == "cancelled"
    assert "cancel_reason" not in body


async def test_reason_given_to_a_batch_cancel_is_shown(
    tmp_path: Path,
    temporal_client: Client,
    temporal_address: str,
    started_tasks: StartedTasks,
    http: httpx.AsyncClient,
) -> None:
    pool = f"idle-{uuid.uuid4().hex[:8]}"
    # The form README gives, narrowed to this test's pool so no other test's job is touched.
    query = (
        f'ComfyWorkflow="{IDLE_POOL_WORKFLOW_ID}" AND ComfyPool="{pool}"'
        ' AND ExecutionStatus="Running"'
    )

    async def cancel_by_batch(api: httpx.AsyncClient, task_id: str) -> None:
        await batch_cancel(temporal_client, temporal_address, query, "bad model")

    task_id = await _cancelled_while_waiting(
        tmp_path, temporal_client, started_tasks, cancel_by_batch, pool
    )
    body = (await http.get(f"/tasks/{task_id}")).json()
    assert body["status"] == "CANCELLED"
    assert body["result"] == "cancelled: bad model"
    assert body["cancel_reason"] == "bad model"
