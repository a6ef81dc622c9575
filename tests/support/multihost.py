"""The service spread over namespaced hosts (tests/support/network_namespaces.py) as a deploy
spreads it over machines: the Temporal dev server, the API with its control worker, two GPU
workers each with an emulator ComfyUI on its own loopback, and an S3 server (moto), every
process with a data directory of its own and only host addresses between them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from activities.workers.temporal_client import connect_temporal
from api.cli.devstack.temporal_server import DevServerConfig
from tests.support.manifests import write_sampled_image_manifests
from tests.support.network_namespaces import Host, Network
from tests.support.worker_processes import (
    COMFY_TEMPORAL,
    ControlWorkerProcess,
    GpuWorkerProcess,
    clean_environment,
)

TEMPORAL_PORT = 7233
API_PORT = 8000
S3_PORT = 9000
METRICS_PORT = 9100
API_KEY = "multihost-test-key"
READY_SECONDS = 60.0
S3_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


def host_environment(data_dir: Path, s3_endpoint: str) -> dict[str, str]:
    """A child's environment: none of this process's service, AWS or proxy settings (traffic goes
    to host addresses and nowhere else), the S3 host as the store, as a deploy sets it."""
    env = {
        k: v
        for k, v in clean_environment().items()
        if not k.startswith("AWS_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        AWS_ENDPOINT_URL=s3_endpoint,
        AWS_ACCESS_KEY_ID=S3_CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=S3_CREDENTIALS["aws_secret_access_key"],
        AWS_REGION=S3_CREDENTIALS["region_name"],
        AWS_CONFIG_FILE=str(data_dir / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(data_dir / "no-aws-credentials"),
        # One signing secret for the API and the control worker, which sign each other's links.
        COMFY_URL_SIGNING_KEY="multihost-url-signing-key",
        PYTHONUNBUFFERED="1",
    )
    return env


class HostProcess:
    """A command inside a host, logging to `<log_dir>/<name>.log`; started once `ready()` holds."""

    def __init__(
        self, name: str, host: Host, argv: list[str], env: dict[str, str], data_dir: Path
    ) -> None:
        self.name = name
        self.host = host
        self.argv = argv
        self.env = env
        self.data_dir = data_dir
        self.log_path = data_dir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, ready: Callable[[], Awaitable[bool]]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.host.command(self.argv),
                env=self.env,
                cwd=self.data_dir,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_SECONDS
        while not await ready():
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.name} exited at startup:\n{self.log_tail()}")
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name} not ready within {READY_SECONDS} s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL to what is left after 20 s."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()

    def log_tail(self, size: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-size:] if self.log_path.exists() else ""


class HostGpuWorker(GpuWorkerProcess):
    """`comfy-temporal gpu-worker` inside a host; its emulator ComfyUI listens on that host's
    loopback, which a cut link leaves alone."""

    def __init__(
        self,
        host: Host,
        address: str,
        data_dir: Path,
        env: dict[str, str],
        *,
        pool: str,
        store: str,
    ) -> None:
        super().__init__(host.name, data_dir, address, data_dir, pool=pool, shutdown_grace=5)
        self.host = host
        self.env = env
        self.store = store

    def command(self) -> list[str]:
        argv = [
            *super().command(),
            "--output-store", self.store,
            "--metrics-port", str(METRICS_PORT), "--metrics-host", "0.0.0.0",
        ]  # fmt: skip
        return self.host.command(argv)

    def environment(self) -> dict[str, str]:
        return self.env

    async def jobs_in_progress(self) -> float | None:
        """The attempts the worker holds, as a Prometheus on another host scrapes it; None when
        its metrics do not answer."""
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
                response = await http.get(f"http://{self.host.address}:{METRICS_PORT}/metrics")
        except httpx.HTTPError:
            return None
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == "comfy_jobs_in_progress":
                    return sample.value
        return None


class HostControlWorker(ControlWorkerProcess):
    """`comfy-temporal control-worker` inside a host."""

    def __init__(
        self, host: Host, address: str, data_dir: Path, env: dict[str, str], *, store: str
    ) -> None:
        manifests_dir, workflows_dir = data_dir / "manifests", data_dir / "workflows"
        super().__init__(
            "control-worker",
            address,
            data_dir,
            manifests_dir=manifests_dir,
            workflows_dir=workflows_dir,
            data_dir=data_dir,
        )
        self.host = host
        self.env = env
        self.store = store

    def command(self) -> list[str]:
        return self.host.command([*super().command(), "--output-store", self.store])

    def environment(self) -> dict[str, str]:
        return self.env


@dataclass
class MultiHostService:
    network: Network
    api_url: str
    temporal: Client
    s3: Any  # a boto3 client of the S3 host; boto3 clients are untyped
    bucket: str
    store_prefix: str
    gpus: dict[str, HostGpuWorker]
    processes: list[HostProcess | GpuWorkerProcess | ControlWorkerProcess]

    def http(self) -> httpx.AsyncClient:
        """A client of the API's address, with its key."""
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
            trust_env=False,
        )

    def stored_keys(self, task_id: str) -> list[str]:
        """Every object under the task's output prefix in the bucket, sorted."""
        listing = self.s3.list_objects_v2(
            Bucket=self.bucket, Prefix=f"{self.store_prefix}/outputs/{task_id}/"
        )
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def logs(self) -> str:
        """Every process's log tail, to explain a failure."""
        return "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in self.processes)


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            return (await http.get(url)).status_code < 500
    except httpx.HTTPError:
        return False


@contextlib.asynccontextmanager
async def service_on_hosts(
    network: Network, base_dir: Path, *, temporal: Host, api: Host, s3: Host, gpus: list[Host]
) -> AsyncIterator[MultiHostService]:
    """Starts every process on its host (the S3 server and Temporal first), each with its own
    directory under `base_dir`; stops them all on the way out, whatever happened."""
    pool = f"multihost-{uuid.uuid4().hex[:6]}"
    s3_endpoint = f"http://{s3.address}:{S3_PORT}"
    temporal_address = f"{temporal.address}:{TEMPORAL_PORT}"
    bucket, store_prefix = "outputs", "comfy"
    store = f"s3://{bucket}/{store_prefix}"
    processes: list[HostProcess | GpuWorkerProcess | ControlWorkerProcess] = []

    def env_for(data_dir: Path) -> dict[str, str]:
        return host_environment(data_dir, s3_endpoint)

    try:
        s3_dir = base_dir / "s3-host"
        moto = HostProcess(
            "moto",
            s3,
            [sys.executable, "-m", "moto.server", "-H", s3.address, "-p", str(S3_PORT)],
            env_for(s3_dir),
            s3_dir,
        )
        processes.append(moto)
        await moto.start(lambda: _answers(s3_endpoint))
        s3_client = boto3.session.Session(**S3_CREDENTIALS).client("s3", endpoint_url=s3_endpoint)
        s3_client.create_bucket(Bucket=bucket)

        # temporal-notes.md, multi-host facts: the dev server must listen on 0.0.0.0 in its host,
        # else it dials its own services on 127.0.0.1 and fails every task-queue call.
        temporal_dir = base_dir / "temporal-host"
        server_argv = DevServerConfig(
            db_file=temporal_dir / "temporal.db", ip="0.0.0.0", port=TEMPORAL_PORT, ui_port=None
        ).command()
        server = HostProcess("temporal", temporal, server_argv, env_for(temporal_dir), temporal_dir)
        processes.append(server)

        async def temporal_answers() -> bool:
            try:
                client = await connect_temporal(temporal_address)
                await client.service_client.check_health()
            except Exception:  # not listening yet
                return False
            return True

        await server.start(temporal_answers)
        temporal_client = await connect_temporal(temporal_address)

        api_dir, control_dir = base_dir / "api-host" / "api", base_dir / "api-host" / "control"
        write_sampled_image_manifests(api_dir, pool)
        write_sampled_image_manifests(control_dir, pool)
        control = HostControlWorker(
            api, temporal_address, control_dir, env_for(control_dir), store=store
        )
        workers = {}
        for host in gpus:
            gpu_dir = base_dir / f"{host.name}-host"
            gpu_dir.mkdir()
            workers[host.name] = HostGpuWorker(
                host, temporal_address, gpu_dir, env_for(gpu_dir), pool=pool, store=store
            )
        processes += [control, *workers.values()]
        api_argv = [
            COMFY_TEMPORAL, "api",
            "--host", api.address, "--port", str(API_PORT),
            "--data-dir", str(api_dir),
            "--manifests", str(api_dir / "manifests"),
            "--workflows", str(api_dir / "workflows"),
            "--output-store", store,
            "--temporal-address", temporal_address,
        ]  # fmt: skip
        api_env = {**env_for(api_dir), "COMFY_API_KEYS": API_KEY}
        api_process = HostProcess("api", api, api_argv, api_env, api_dir)
        processes.append(api_process)
        api_url = f"http://{api.address}:{API_PORT}"
        await asyncio.gather(
            control.start(),
            *(w.start() for w in workers.values()),
            api_process.start(lambda: _answers(f"{api_url}/health")),
        )
        yield MultiHostService(
            network, api_url, temporal_client, s3_client, bucket, store_prefix, workers, processes
        )
    finally:
        for process in reversed(processes):
            await process.stop()
