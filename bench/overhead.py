"""What the service adds on top of ComfyUI: per-job overhead, backlog makespan, submit throughput.

By default it starts its own stack on free loopback ports: a Temporal dev server (SQLite file),
`comfy-temporal api --with-control-worker`, one `comfy-temporal gpu-worker` attached to the ComfyUI
emulator (tests/emulator), and runs `emulator_sampler` jobs (10 steps x 0.05 s, so each job takes
ComfyUI about half a second). `--comfyui-url URL` runs the same against a real ComfyUI (pick a
workflow with `--workflow` / `--params`); `--api URL` measures a stack that is already running.

Figures:
- overhead per job (sequential jobs): end to end, from just before POST /generate to the
  workflow's close time in Temporal, minus ComfyUI's own execution time (execution_start to
  success, reported in result.timings.comfy_execution_seconds). The close time is used rather than
  the moment a GET /tasks poll sees SUCCESS, so the poll interval is not measured.
- backlog makespan: the same prompts posted all at once through the service, divided by the
  makespan of posting them straight to ComfyUI (ComfyUIClient), which is the floor.
- submit throughput: POST /generate requests per second from concurrent clients.

Usage: python bench/overhead.py [--jobs 30] [--backlog 20] [--submit 200] [--comfyui-url URL]
       [--api URL --temporal-address HOST:PORT] [--workflow ID --params JSON]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from temporalio.client import Client  # noqa: E402

from activities.comfyui_client import ComfyUIClient  # noqa: E402
from activities.comfyui_process import ComfyUIProcess  # noqa: E402
from activities.temporal_client import connect_temporal  # noqa: E402
from api.child_process import ChildProcess  # noqa: E402
from api.devserver import DevServerConfig, TemporalDevServer  # noqa: E402
from api.http_server import free_port  # noqa: E402
from manifests.registry import ManifestRegistry  # noqa: E402
from tests.api.emulator_workflow import (  # noqa: E402
    EMULATOR_WORKFLOW_ID,
    write_manifests_with_emulator_sampler,
)

EMULATOR_DIR = REPO_ROOT / "tests" / "emulator"
DEFAULT_PARAMS = {"steps": 10, "seconds_per_step": 0.05}


@dataclass
class Stack:
    api_url: str
    temporal: Client
    comfyui_url: str | None
    registry: ManifestRegistry | None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class DistinctParams:
    """Distinct inputs for every job of the run, so ComfyUI's node cache never turns a job into a
    no-op: a new seed where the workflow has one, else a slightly different small image size."""

    def __init__(self, base: dict[str, Any], parameters: set[str]) -> None:
        self.base = base
        self.parameters = parameters
        self.count = 0

    def next(self) -> dict[str, Any]:
        n = self.count
        self.count += 1
        params = dict(self.base)
        if "seed" in self.parameters:
            params["seed"] = 1000 + n
        elif {"width", "height"} <= self.parameters:
            params["width"] = 32 + n % 256
            params["height"] = 32 + n // 256
        return params

    def take(self, count: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(count)]


@asynccontextmanager
async def own_stack(args: argparse.Namespace, work: Path) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as stack:
        manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(work)
        data_dir = work / "data"
        server = TemporalDevServer(
            DevServerConfig(
                db_file=work / "temporal.db",
                port=free_port(),
                ui_port=None,
                log_file=work / "logs" / "temporal.log",
            )
        )
        await server.start()
        stack.push_async_callback(server.stop)

        comfyui_url = args.comfyui_url
        if comfyui_url is None:
            emulator = ComfyUIProcess(
                EMULATOR_DIR,
                work_dir=work / "comfyui",
                python=sys.executable,
                extra_args=["--cpu"],
                name="emulator",
            )
            await emulator.start()
            stack.push_async_callback(emulator.stop)
            comfyui_url = emulator.url

        env = dict(os.environ, TEMPORAL_ADDRESS=server.address)
        for name in ("COMFYUI_PATH", "COMFYUI_URL", "COMFYUI_ARGS", "TEMPORAL_NAMESPACE"):
            env.pop(name, None)
        cli = [sys.executable, "-m", "api.cli"]
        gpu = ChildProcess(
            "gpu-worker",
            [*cli, "gpu-worker", "--comfyui-url", comfyui_url, "--data-dir", str(data_dir),
             "--name", "bench-gpu"],
            env=env,
            cwd=REPO_ROOT,
            log_path=work / "logs" / "gpu-worker.log",
        )  # fmt: skip
        await gpu.start()
        stack.push_async_callback(gpu.stop)
        api_port = free_port()
        api = ChildProcess(
            "api",
            [*cli, "api", "--with-control-worker", "--port", str(api_port),
             "--data-dir", str(data_dir), "--manifests", str(manifests_dir),
             "--workflows", str(workflows_dir), "--log-level", "warning"],
            env=env,
            cwd=REPO_ROOT,
            log_path=work / "logs" / "api.log",
        )  # fmt: skip
        await api.start()
        stack.push_async_callback(api.stop)
        api_url = f"http://127.0.0.1:{api_port}"
        await wait_ready(api_url, [gpu, api])
        temporal = await connect_temporal(server.address, "default")
        yield Stack(api_url, temporal, comfyui_url, ManifestRegistry(manifests_dir, workflows_dir))


async def wait_ready(api_url: str, children: list[ChildProcess], timeout: float = 120) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in children:
                if not child.running:
                    raise RuntimeError(
                        f"{child.name} exited:\n" + "\n".join(child.last_log_lines(30))
                    )
            try:
                if (await http.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{api_url}/ready did not turn 200 within {timeout} s")


async def submit(http: httpx.AsyncClient, workflow: str, params: dict[str, Any]) -> str:
    response = await http.post("/generate", json={"workflow_id": workflow, "params": params})
    if response.status_code != 202:
        raise RuntimeError(f"POST /generate answered {response.status_code}: {response.text}")
    task_id: str = response.json()["task_id"]
    return task_id


async def finished(stack: Stack, http: httpx.AsyncClient, task_id: str) -> tuple[datetime, dict]:
    """Waits on Temporal (a long poll, not an interval), then reads the task through the API."""
    handle = stack.temporal.get_workflow_handle(task_id)
    await handle.result()
    close_time = (await handle.describe()).close_time
    assert close_time is not None
    body = (await http.get(f"/tasks/{task_id}")).json()
    if body["status"] != "SUCCESS":
        raise RuntimeError(f"task {task_id} ended {body['status']}: {body.get('result')}")
    return close_time, body


async def measure_overhead(
    stack: Stack, http: httpx.AsyncClient, workflow: str, params: list[dict[str, Any]]
) -> dict[str, list[float]]:
    e2e: list[float] = []
    comfy: list[float] = []
    post: list[float] = []
    for job_params in params:
        started = datetime.now().astimezone()
        posted = time.monotonic()
        task_id = await submit(http, workflow, job_params)
        post.append(time.monotonic() - posted)
        close_time, body = await finished(stack, http, task_id)
        e2e.append((close_time - started).total_seconds())
        comfy.append(float(body["result"]["timings"].get("comfy_execution_seconds") or 0.0))
    return {
        "e2e": e2e,
        "comfy": comfy,
        "overhead": [a - b for a, b in zip(e2e, comfy, strict=True)],
        "post": post,
    }


async def service_makespan(
    stack: Stack, http: httpx.AsyncClient, workflow: str, params: list[dict[str, Any]]
) -> float:
    started = datetime.now().astimezone()
    task_ids = await asyncio.gather(*(submit(http, workflow, p) for p in params))
    closes = await asyncio.gather(*(finished(stack, http, t) for t in task_ids))
    return (max(c for c, _ in closes) - started).total_seconds()


async def direct_makespan(comfyui_url: str, graphs: list[dict[str, Any]], out: Path) -> float:
    async with ComfyUIClient(comfyui_url) as comfy:
        started = time.monotonic()
        await asyncio.gather(
            *(comfy.run_prompt(g, output_dir=out / str(i)) for i, g in enumerate(graphs))
        )
        return time.monotonic() - started


async def submit_throughput(
    http: httpx.AsyncClient, workflow: str, params: list[dict[str, Any]], concurrency: int
) -> tuple[float, list[str]]:
    queue = asyncio.Queue[dict[str, Any]]()
    for p in params:
        queue.put_nowait(p)
    task_ids: list[str] = []

    async def client() -> None:
        while not queue.empty():
            task_ids.append(await submit(http, workflow, queue.get_nowait()))

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return len(params) / (time.monotonic() - started), task_ids


async def run(args: argparse.Namespace) -> None:
    base_params = json.loads(args.params) if args.params else dict(DEFAULT_PARAMS)
    with tempfile.TemporaryDirectory(prefix="comfy-bench-") as tmp:
        work = Path(tmp)
        async with AsyncExitStack() as exits:
            if args.api:
                temporal = await connect_temporal(args.temporal_address, args.namespace)
                stack = Stack(args.api.rstrip("/"), temporal, args.comfyui_url, None)
            else:
                stack = await exits.enter_async_context(own_stack(args, work))
            http = await exits.enter_async_context(
                httpx.AsyncClient(base_url=stack.api_url, timeout=120)
            )
            workflow_info = (await http.get(f"/workflows/{args.workflow}")).json()
            jobs = DistinctParams(base_params, set(workflow_info["parameters"]))

            # Warm-up: first-run costs (imports, sandbox, connections) are not per-job overhead.
            await measure_overhead(stack, http, args.workflow, jobs.take(3))
            seq = await measure_overhead(stack, http, args.workflow, jobs.take(args.jobs))

            # Direct first, then the service, each on prompts ComfyUI has not seen.
            direct: float | None = None
            if stack.comfyui_url and stack.registry is not None:
                registry = stack.registry
                graphs = [registry.render(args.workflow, p).prompt for p in jobs.take(args.backlog)]
                direct = await direct_makespan(stack.comfyui_url, graphs, work / "direct")
            through_service = await service_makespan(
                stack, http, args.workflow, jobs.take(args.backlog)
            )

            rate, task_ids = await submit_throughput(
                http, args.workflow, jobs.take(args.submit), args.concurrency
            )
            if args.api:  # do not leave this burst queued on someone's GPUs
                await asyncio.gather(
                    *(end_task(stack.temporal, t) for t in task_ids), return_exceptions=True
                )

    print_report(args, base_params, seq, through_service, direct, rate)


async def end_task(temporal: Client, task_id: str) -> None:
    await temporal.get_workflow_handle(task_id).terminate(reason="benchmark done")


def print_report(
    args: argparse.Namespace,
    params: dict[str, Any],
    seq: dict[str, list[float]],
    through_service: float,
    direct: float | None,
    rate: float,
) -> None:
    target = args.api or ("ComfyUI at " + args.comfyui_url if args.comfyui_url else "emulator")
    print()
    print(f"comfy-temporal overhead benchmark - {target}")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"workflow: {args.workflow} {json.dumps(params)}")
    print()
    print(f"{'measure':<44}{'p50':>10}{'p99':>10}")
    for label, key in (
        ("end to end (POST -> workflow closed), s", "e2e"),
        ("ComfyUI's own execution, s", "comfy"),
        ("service overhead per job, s", "overhead"),
        ("POST /generate latency, s", "post"),
    ):
        values = seq[key]
        print(f"{label:<44}{percentile(values, 50):>10.3f}{percentile(values, 99):>10.3f}")
    print(f"  ({len(seq['e2e'])} sequential jobs)")
    print()
    print(f"backlog of {args.backlog} jobs, makespan through the service: {through_service:8.2f} s")
    if direct is not None:
        print(f"backlog of {args.backlog} jobs, makespan straight to ComfyUI: {direct:8.2f} s")
        print(f"ratio service / direct:                         {through_service / direct:8.3f}")
    else:
        print("(no ComfyUI URL: direct makespan not measured)")
    print()
    print(
        f"submit throughput, POST /generate ({args.submit} requests, {args.concurrency} clients):"
        f" {rate:.1f} requests/s"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", help="measure this running API instead of starting a stack")
    parser.add_argument(
        "--temporal-address", default=None, help="with --api: its Temporal (default envconfig)"
    )
    parser.add_argument("--namespace", default=None, help="with --api: the Temporal namespace")
    parser.add_argument(
        "--comfyui-url", default=os.environ.get("COMFYUI_URL"),
        help="a real ComfyUI to measure (env COMFYUI_URL); default: the emulator",
    )  # fmt: skip
    parser.add_argument("--workflow", default=EMULATOR_WORKFLOW_ID)
    parser.add_argument("--params", default=None, help=f"JSON params (default {DEFAULT_PARAMS})")
    parser.add_argument("--jobs", type=int, default=30, help="sequential jobs for overhead")
    parser.add_argument("--backlog", type=int, default=20, help="jobs in the backlog run")
    parser.add_argument("--submit", type=int, default=200, help="requests for submit throughput")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent submitters")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    asyncio.run(run(args))
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: a finished Temporal client can abort the interpreter at exit


if __name__ == "__main__":
    main()
