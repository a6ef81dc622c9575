"""The API process restarted mid-backlog (SIGTERM, as a deploy does): nothing is lost, and
clients polling GET /tasks/{id} resume after the restart and see SUCCESS."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import httpx

from activities.workers.temporal_client import connect_temporal
from api.cli.devstack.http_server import free_port
from tests.support.manifests import write_fault_manifests
from tests.support.outputs import assert_stored_once
from tests.support.stack import generation_stack
from tests.support.temporal import RestartableDevServer
from tests.support.waiting import wait_for
from tests.support.worker_processes import COMFY_TEMPORAL, clean_environment

JOBS = 5


async def start_api(
    address: str, port: int, data_dir: Path, manifests_dir: Path, workflows_dir: Path
) -> asyncio.subprocess.Process:
    """`comfy-temporal api --with-control-worker`, the API with its embedded control worker."""
    command = [
        COMFY_TEMPORAL, "api", "--with-control-worker",
        "--temporal-address", address,
        "--port", str(port),
        "--data-dir", str(data_dir),
        "--manifests", str(manifests_dir),
        "--workflows", str(workflows_dir),
        "--log-level", "warning",
    ]  # fmt: skip
    env = clean_environment()
    log_path = data_dir.parent / "api.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(*command, env=env, stdout=log, stderr=log)

    async def answers() -> bool:
        if process.returncode is not None:
            raise AssertionError(
                f"the API exited with {process.returncode} at startup:\n"
                + log_path.read_text(errors="replace")[-3000:]
            )
        try:
            async with httpx.AsyncClient(trust_env=False) as http:
                return (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(answers, "the API to answer", 60)
    return process


class Poller:
    """A client polling GET /tasks/{id} until a final status, riding out connection errors."""

    def __init__(self, url: str, task_id: str) -> None:
        self.url = url
        self.task_id = task_id
        self.failed_polls = 0
        self.final: dict | None = None

    async def run(self) -> dict:
        async with httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=10) as http:
            while True:
                try:
                    response = await http.get(f"/tasks/{self.task_id}")
                except httpx.TransportError:
                    self.failed_polls += 1
                else:
                    if response.status_code == 200:
                        body = response.json()
                        if body["status"] in ("SUCCESS", "FAILURE", "CANCELLED"):
                            self.final = body
                            return body
                    else:
                        self.failed_polls += 1
                await asyncio.sleep(0.1)


async def test_clients_polling_through_an_api_restart_see_every_job_succeed(
    own_dev_server: RestartableDevServer, tmp_path: Path
):
    pool = f"api-restart-{uuid.uuid4().hex[:8]}"
    manifests_dir, workflows_dir = write_fault_manifests(tmp_path, pool)
    data_dir = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # GPU workers only: the API under test runs as its own process, with its control worker.
    async with generation_stack(
        await connect_temporal(own_dev_server.address),
        tmp_path,
        api=False,
        control_worker=None,
        pool=pool,
        emulator_args=["--cache-none"],
    ) as stack:
        api = await start_api(own_dev_server.address, port, data_dir, manifests_dir, workflows_dir)
        pollers: list[asyncio.Task] = []
        try:
            await stack.start_gpu_worker("gpu-api")
            task_ids = []
            async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=30) as http:
                for _ in range(JOBS):
                    response = await http.post(
                        "/generate",
                        json={
                            "workflow_id": "sampled_image",
                            "params": {"steps": 10, "seconds_per_step": 0.1},
                        },
                    )
                    assert response.status_code == 202, response.text
                    task_ids.append(response.json()["task_id"])
            clients = [Poller(url, task_id) for task_id in task_ids]
            pollers = [asyncio.create_task(c.run()) for c in clients]

            async def first_success() -> bool:
                return any(c.final for c in clients)

            await wait_for(first_success, "the first job to succeed", 60)
            api.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(api.wait(), 30) == 0
            # While the API is down, jobs still run on the GPU and the pollers see refused
            # connections.
            await wait_for(
                lambda: asyncio.sleep(0, all(c.failed_polls or c.final for c in clients)),
                "every waiting client to notice the API is gone",
            )
            api = await start_api(
                own_dev_server.address, port, data_dir, manifests_dir, workflows_dir
            )
            finals = await asyncio.wait_for(asyncio.gather(*pollers), 60)
        finally:
            for poller in pollers:
                poller.cancel()
            if api.returncode is None:
                api.send_signal(signal.SIGTERM)
                await asyncio.wait_for(api.wait(), 30)

    assert [f["status"] for f in finals] == ["SUCCESS"] * JOBS
    assert sum(1 for c in clients if c.failed_polls) >= 1  # someone polled through the restart
    for task_id, final in zip(task_ids, finals, strict=True):
        assert final["result"]["attempts"] == 1  # the GPU work never noticed
        assert_stored_once(data_dir, task_id, [o["filename"] for o in final["result"]["outputs"]])
