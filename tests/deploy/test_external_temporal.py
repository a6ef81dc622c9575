"""The service on a Temporal cluster it did not start: a second dev server, started here without our
search attributes and without `comfy-temporal dev`, stands in for a production cluster. Each
process reaches it only through a temporalio.envconfig profile (TEMPORAL_CONFIG_FILE,
TEMPORAL_PROFILE) naming its address and a namespace other than `default`; `comfy-temporal setup`
registers the search attributes, twice without harm; then the API, a control worker and a GPU
worker, each a process of its own, generate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from activities.io.ports import free_port
from api.cli.devstack.temporal_server import temporal_cli
from api.cli.setup import registered_search_attributes
from manifests.definitions import DEFAULT_POOL
from temporal_workflows.names import SEARCH_ATTRIBUTES
from tests.support.waiting import poll_task, wait_for
from tests.support.worker_processes import (
    COMFY_TEMPORAL,
    clean_environment,
    gpu_worker_command,
    kill_processes_mentioning,
)

NAMESPACE = "comfy-prod"
OUR_ATTRIBUTES = sorted(key.name for key in SEARCH_ATTRIBUTES)

pytestmark = pytest.mark.slow


async def start(argv: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """A process in a session of its own (so the whole group can be stopped), output to `log`."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=out, stderr=out, start_new_session=True
        )


async def stop(process: asyncio.subprocess.Process, grace: float = 20.0) -> None:
    """SIGTERM to the process's group, SIGKILL after `grace` seconds."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


@contextlib.asynccontextmanager
async def plain_temporal_server(log: Path) -> AsyncIterator[str]:
    """`temporal server start-dev` with a namespace of its own and nothing of ours: no search
    attributes, no dynamic config. Yields its address."""
    address = f"127.0.0.1:{free_port()}"
    host, port = address.split(":")
    argv = [
        temporal_cli(), "server", "start-dev", "--ip", host, "--port", port, "--headless",
        "--namespace", NAMESPACE,
    ]  # fmt: skip
    process = await start(argv, dict(os.environ), log)
    try:

        async def answers() -> bool:
            assert process.returncode is None, log.read_text()
            try:
                client = await Client.connect(address, namespace=NAMESPACE)
                await client.service_client.check_health()
                # The namespace is there once the frontend serves requests in it.
                await registered_search_attributes(client)
                return True
            except Exception:  # not listening yet, or not serving the namespace yet
                return False

        await wait_for(answers, "the second Temporal server to answer", 60, interval=0.2)
        yield address
    finally:
        await stop(process)


def profile_environment(tmp_path: Path, address: str) -> dict[str, str]:
    """A clean environment whose only Temporal settings are a profile file, as on a cluster."""
    profile = tmp_path / "temporal.toml"
    profile.write_text(f'[profile.prod]\naddress = "{address}"\nnamespace = "{NAMESPACE}"\n')
    env = clean_environment()
    env.update(TEMPORAL_CONFIG_FILE=str(profile), TEMPORAL_PROFILE="prod")
    return env


async def run_setup(env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        COMFY_TEMPORAL, "setup", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_setup_then_generate_on_a_temporal_cluster_the_service_did_not_start(
    tmp_path: Path,
) -> None:
    async with plain_temporal_server(tmp_path / "temporal.log") as address:
        client = await Client.connect(address, namespace=NAMESPACE)
        assert not set(OUR_ATTRIBUTES) & set(await registered_search_attributes(client))

        env = profile_environment(tmp_path, address)
        first = await run_setup(env)
        for name in OUR_ATTRIBUTES:
            assert f"registered search attribute {name} (Keyword)" in first
            assert f"namespace '{NAMESPACE}' at {address}" in first
        second = await run_setup(env)
        for name in OUR_ATTRIBUTES:
            assert f"search attribute {name} already registered" in second
        assert set(OUR_ATTRIBUTES) <= set(await registered_search_attributes(client))

        # The API and the control worker share the URL-signing key, not a disk.
        env["COMFY_URL_SIGNING_KEY"] = "external-temporal-test-key"
        port = free_port()
        data_dir = tmp_path / "data"  # the local output store, shared by API and GPU worker
        processes = [
            await start(
                [COMFY_TEMPORAL, "api", "--port", str(port), "--data-dir", str(data_dir)],
                env,
                tmp_path / "api.log",
            ),
            await start(
                [COMFY_TEMPORAL, "control-worker", "--data-dir", str(tmp_path / "control")],
                env,
                tmp_path / "control.log",
            ),
            await start(
                gpu_worker_command(
                    pool=DEFAULT_POOL,
                    name="gpu-external",
                    data_dir=data_dir,
                    temporal_address=None,
                    shutdown_grace=10,
                ),
                env,
                tmp_path / "gpu.log",
            ),
        ]
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

                async def ready() -> bool:
                    for process, name in zip(processes, ("api", "control", "gpu"), strict=True):
                        log = (tmp_path / f"{name}.log").read_text()
                        assert process.returncode is None, f"{name} exited:\n{log[-3000:]}"
                    try:
                        return (await http.get("/ready")).status_code == 200
                    except httpx.TransportError:
                        return False

                # /ready: the API reaches the cluster, the control and GPU workers poll it.
                await wait_for(ready, "the stack on the second Temporal to be ready", 90, 0.2)
                accepted = await http.post("/generate", json={"workflow_id": "smoke_image"})
                assert accepted.status_code == 202, accepted.text
                task_id = accepted.json()["task_id"]
                done = await poll_task(
                    http, task_id, lambda b: b["status"] in ("SUCCESS", "FAILURE"), 60
                )
                assert done["status"] == "SUCCESS", done
                assert done["result"]["worker"] == "gpu-external"
                download = await http.get(done["result"]["download_url"])
                assert download.status_code == 200 and download.content
        finally:
            for process in processes:
                await stop(process)
            kill_processes_mentioning(str(data_dir / "comfyui"))

        # The job ran in the cluster's namespace, with the attributes setup registered.
        async def listed() -> list[str]:
            query = 'ComfyWorkflow = "smoke_image"'
            return [execution.id async for execution in client.list_workflows(query)]

        assert await wait_for(listed, "the job in the cluster's visibility", 30) == [task_id]
