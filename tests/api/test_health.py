"""/health, /ready, /ready/api and the guarantee that server faults never leak a stack trace."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig

from api.app import create_app
from api.cli.devstack.http_server import free_port, serve_in_background
from api.cli.devstack.temporal_server import DevServerConfig, TemporalDevServer
from api.settings import Settings
from temporal_workflows.names import pool_task_queue
from tests.support.manifests import IDLE_POOL_WORKFLOW_ID
from tests.support.stack import api_without_gpu_workers
from tests.support.temporal import StartedTasks


async def test_health_answers_while_the_process_is_up(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_ready_is_503_naming_a_pool_without_gpu_workers(
    temporal_client: Client, tmp_path: Path
) -> None:
    pool = f"empty-{uuid.uuid4().hex[:8]}"
    app = create_app(
        Settings(data_dir=tmp_path, ready_pools=(pool,)), temporal_client=temporal_client
    )
    async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["temporal_reachable"] is True
    assert any(pool_task_queue(pool) in reason for reason in body["reasons"])


async def test_ready_api_is_200_and_jobs_are_accepted_while_no_gpu_worker_polls(
    temporal_client: Client, tmp_path: Path, started_tasks: StartedTasks
) -> None:
    """The probe a load balancer reads keeps the API in service while the GPUs are down: the
    job waits in Temporal for a worker."""
    pool = f"down-{uuid.uuid4().hex[:8]}"
    async with api_without_gpu_workers(tmp_path, temporal_client, pool) as http:
        full = await http.get("/ready")
        api = await http.get("/ready/api")
        accepted = await http.post("/generate", json={"workflow_id": IDLE_POOL_WORKFLOW_ID})
    assert full.status_code == 503
    assert any(pool_task_queue(pool) in reason for reason in full.json()["reasons"])
    assert api.status_code == 200
    assert api.json() == {
        "ready": True, "temporal_reachable": True, "temporal_error": None, "reasons": []
    }  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    started_tasks.append(accepted.json()["task_id"])


class _BrokenRegistry:
    """A registry whose disk read fails unexpectedly."""

    def snapshot(self) -> Any:
        raise OSError("disk on fire at /secret/path")


async def test_unexpected_error_is_a_500_without_stack_trace(
    temporal_client: Client, tmp_path: Path
) -> None:
    app = create_app(
        Settings(data_dir=tmp_path),
        temporal_client=temporal_client,
        registry=_BrokenRegistry(),  # type: ignore[arg-type]
    )
    async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/workflows")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert "internal error" in detail
    assert "Traceback" not in response.text and "/secret/path" not in response.text


async def test_lost_temporal_is_a_503_not_a_500(tmp_path: Path) -> None:
    server = TemporalDevServer(
        DevServerConfig(db_file=None, port=free_port(), ui_port=None, log_file=tmp_path / "t.log")
    )
    await server.start()
    try:
        # Retries give up after 1 s instead of 10 s: the answer is the same, the test faster.
        client = await Client.connect(
            server.address,
            data_converter=pydantic_data_converter,
            retry_config=RetryConfig(max_elapsed_time_millis=1000),
        )
    finally:
        await server.stop()
    app = create_app(Settings(data_dir=tmp_path), temporal_client=client)
    async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        response = await http.get("/tasks/smoke_image-20260101-000000-abcdef")
        ready = await http.get("/ready")
        ready_api = await http.get("/ready/api")
    assert response.status_code == 503
    assert "Temporal is not reachable" in response.json()["detail"]
    assert ready.status_code == 503 and ready.json()["temporal_reachable"] is False
    assert ready_api.status_code == 503
    assert ready_api.json()["reasons"] == ["Temporal is not reachable"]
