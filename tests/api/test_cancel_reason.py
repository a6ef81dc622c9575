"""A cancelled task shows why: `result` reads "cancelled: <reason>" and `cancel_reason` holds the
reason, read from the run's history, so it shows with no control worker running."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from api.http_server import serve_in_background
from api.main import create_app
from api.settings import Settings
from manifests.registry import ManifestRegistry
from tests.api.conftest import StartedTasks
from tests.api.emulator_workflow import write_manifests_with_emulator_sampler

WORKFLOW_ID = "idle_pool_image"


@asynccontextmanager
async def api_without_gpu_workers(
    tmp_path: Path, temporal_client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with its control worker, and a workflow whose GPU pool nobody polls: a job waits
    for a GPU until it is cancelled."""
    pool = f"idle-{uuid.uuid4().hex[:8]}"
    manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(tmp_path)
    with (manifests_dir / "workflows.yaml").open("a") as f:
        f.write(
            f"\n{WORKFLOW_ID}:\n  workflow_file: smoke_image.json\n  description: no GPU\n"
            f"  parameters: [width]\n  pool: {pool}\n"
            "  overrides:\n    width: {targets: [{node: Empty Image, input: width}]}\n"
        )
    app = create_app(
        Settings(data_dir=tmp_path / "data", embedded_control_worker=True),
        temporal_client=temporal_client,
        registry=ManifestRegistry(manifests_dir, workflows_dir),
    )
    async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield http


async def _poll(http: httpx.AsyncClient, task_id: str, done: Callable[[dict], bool]) -> dict:
    async with asyncio.timeout(30):
        while True:
            body: dict[str, Any] = (await http.get(f"/tasks/{task_id}")).json()
            if done(body):
                return body
            await asyncio.sleep(0.05)


async def _cancelled_while_waiting(
    tmp_path: Path,
    temporal_client: Client,
    started_tasks: StartedTasks,
    cancel: Callable[[httpx.AsyncClient, str], Awaitable[None]],
) -> str:
    """Start a job, cancel it (by `cancel`) while it waits for a GPU, wait until it is CANCELLED,
    then stop the API and its control worker; returns the task id."""
    async with api_without_gpu_workers(tmp_path, temporal_client) as http:
        accepted = await http.post("/generate", json={"workflow_id": WORKFLOW_ID})
        assert accepted.status_code == 202, accepted.text
        task_id: str = accepted.json()["task_id"]
        started_tasks.append(task_id)
        await _poll(
            http, task_id, lambda b: (b.get("queue") or {}).get("phase") == "waiting_for_gpu_worker"
        )
        await cancel(http, task_id)
        await _poll(http, task_id, lambda b: b["status"] != "PENDING")
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
        await temporal_client.get_workflow_handle(task_id).signal("cancel", "too dark")

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
