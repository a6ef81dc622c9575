"""A job whose GPU pool has no worker reads PENDING, naming its queue and that queue's backlog."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from api.http_server import serve_in_background
from api.main import create_app
from api.settings import Settings
from manifests.registry import ManifestRegistry
from tests.api.conftest import StartedTasks
from tests.api.emulator_workflow import write_manifests_with_emulator_sampler


async def test_job_waiting_for_a_gpu_worker_shows_queue_and_backlog(
    tmp_path: Path, temporal_client: Client, started_tasks: StartedTasks
) -> None:
    pool = f"idle-{uuid.uuid4().hex[:8]}"
    manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(tmp_path)
    with (manifests_dir / "workflows.yaml").open("a") as f:
        f.write(
            f"\nidle_pool_image:\n  workflow_file: smoke_image.json\n  description: no GPU\n"
            f"  parameters: [width]\n  pool: {pool}\n"
            "  overrides:\n    width: {targets: [{node: Empty Image, input: width}]}\n"
        )
    settings = Settings(data_dir=tmp_path / "data", embedded_control_worker=True)
    app = create_app(
        settings,
        temporal_client=temporal_client,
        registry=ManifestRegistry(manifests_dir, workflows_dir),
    )
    async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url) as http:
        accepted = await http.post("/generate", json={"workflow_id": "idle_pool_image"})
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
