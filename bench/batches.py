"""A batch of 1,000 items: how long POST /batches takes to answer, how long until every item is
started (a task Temporal lists) and queued for a GPU, and what single POST /generate requests
made meanwhile see, against the same singles with no batch running.

It starts its own stack on free loopback ports: a Temporal dev server (SQLite file, the flags of
`comfy-temporal dev`) and `comfy-temporal api --with-control-worker`, serving `idle_pool_image`
on a GPU pool no worker polls, so every job waits for a GPU: the figures are the service's own
cost of taking the work in, not ComfyUI's. Singles are measured twice: alone (baseline), then
one every --single-interval seconds while the batch's items start:
- POST latency: from sending POST /generate to its 202;
- queued after: from sending it until GET /tasks/{id} shows the job waiting for a GPU worker
  (its GPU step scheduled), polled every 20 ms. A single that waits behind the batch's items on
  the control queue shows here.

Usage: python bench/batches.py [--items 1000] [--singles 20] [--single-interval 0.5]
       [--batch-priority 3]  (items at the singles' own priority, for comparison)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from temporalio.client import Client  # noqa: E402

from activities.workers.temporal_client import connect_temporal  # noqa: E402
from api.cli.devstack.child_process import ChildProcess  # noqa: E402
from api.cli.devstack.http_server import free_port  # noqa: E402
from api.cli.devstack.temporal_server import DevServerConfig, TemporalDevServer  # noqa: E402
from api.tasks.queues import queue_backlog, queue_pollers  # noqa: E402
from bench.overhead import percentile  # noqa: E402
from temporal_workflows.names import CONTROL_TASK_QUEUE, pool_task_queue  # noqa: E402
from tests.support.manifests import (  # noqa: E402
    IDLE_POOL_WORKFLOW_ID,
    append_workflows,
    idle_pool_workflow,
    write_manifests_with_emulator_sampler,
)

IDLE_POOL = "bench-idle"
POLL = 0.02


@dataclass
class IdleStack:
    api_url: str
    temporal: Client
    api_pid: int
    temporal_pid: int

    @property
    def gpu_queue(self) -> str:
        return pool_task_queue(IDLE_POOL)


@asynccontextmanager
async def idle_stack(work: Path) -> AsyncIterator[IdleStack]:
    """Dev server + API with its control worker; `idle_pool_image` runs on a pool nobody polls."""
    async with AsyncExitStack() as stack:
        manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(work)
        append_workflows(manifests_dir, idle_pool_workflow(IDLE_POOL))
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
        env = dict(os.environ, TEMPORAL_ADDRESS=server.address)
        for name in ("COMFYUI_PATH", "COMFYUI_URL", "COMFYUI_ARGS", "TEMPORAL_NAMESPACE"):
            env.pop(name, None)
        api_port = free_port()
        api = ChildProcess(
            "api",
            [sys.executable, "-m", "api.cli.main", "api", "--with-control-worker",
             "--port", str(api_port), "--data-dir", str(work / "data"),
             "--manifests", str(manifests_dir), "--workflows", str(workflows_dir),
             "--log-level", "warning"],
            env=env,
            cwd=REPO_ROOT,
            log_path=work / "logs" / "api.log",
        )  # fmt: skip
        await api.start()
        stack.push_async_callback(api.stop)
        temporal = await connect_temporal(server.address, "default")
        api_url = f"http://127.0.0.1:{api_port}"
        async with httpx.AsyncClient(base_url=api_url) as http:
            deadline = time.monotonic() + 120
            while True:
                if not api.running:
                    raise RuntimeError("api exited:\n" + "\n".join(api.last_log_lines(30)))
                try:
                    healthy = (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    healthy = False
                if healthy and await queue_pollers(temporal, CONTROL_TASK_QUEUE, activities=False):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the API and its control worker did not come up")
                await asyncio.sleep(0.1)
        assert api.pid is not None and server.pid is not None
        yield IdleStack(api_url, temporal, api.pid, server.pid)


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


async def submit_single(http: httpx.AsyncClient, width: int) -> tuple[float, float, str]:
    """(POST latency, seconds until the job waits for a GPU worker, task id)."""
    sent = time.monotonic()
    response = await http.post(
        "/generate", json={"workflow_id": IDLE_POOL_WORKFLOW_ID, "params": {"width": width}}
    )
    answered = time.monotonic() - sent
    if response.status_code != 202:
        raise RuntimeError(f"POST /generate answered {response.status_code}: {response.text}")
    task_id: str = response.json()["task_id"]
    while True:
        task = (await http.get(f"/tasks/{task_id}")).json()
        if (task.get("queue") or {}).get("phase") == "waiting_for_gpu_worker":
            return answered, time.monotonic() - sent, task_id
        await asyncio.sleep(POLL)


def spread(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"p50 {percentile(ms, 50):7.1f} ms  p95 {percentile(ms, 95):7.1f} ms  max {max(ms):7.1f} ms"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="bench-batches-") as tmp:
        async with (
            idle_stack(Path(tmp)) as stack,
            httpx.AsyncClient(base_url=stack.api_url, timeout=120) as http,
        ):
            alone = [await submit_single(http, 16 + i) for i in range(args.singles)]
            figures["alone_post"] = [a for a, _, _ in alone]
            figures["alone_queued"] = [q for _, q, _ in alone]

            items = [{"width": 16 + i % 64} for i in range(args.items)]
            asked = time.monotonic()
            body: dict[str, Any] = {"workflow_id": IDLE_POOL_WORKFLOW_ID, "items": items}
            if args.batch_priority is not None:
                body["options"] = {"priority": args.batch_priority}
            response = await http.post("/batches", json=body)
            figures["accept"] = time.monotonic() - asked
            if response.status_code != 202:
                raise RuntimeError(
                    f"POST /batches answered {response.status_code}: {response.text}"
                )
            batch_id = response.json()["batch_id"]

            during: list[tuple[float, float, str]] = []

            async def singles_meanwhile() -> None:
                width = 100
                while len(during) < args.singles:
                    during.append(await submit_single(http, width))
                    width += 1
                    await asyncio.sleep(args.single_interval)

            singles = asyncio.create_task(singles_meanwhile())
            started_at = queued_at = None
            while started_at is None or queued_at is None:
                now = time.monotonic() - asked
                if started_at is None:
                    batch = (await http.get(f"/batches/{batch_id}")).json()
                    if batch["state"] == "started" and batch["started"] == args.items:
                        started_at = now
                if queued_at is None:
                    backlog = await queue_backlog(stack.temporal, stack.gpu_queue)
                    if backlog >= args.items + args.singles + len(during):
                        queued_at = now
                await asyncio.sleep(0.1)
            await singles
            figures["all_started"] = started_at
            figures["all_queued"] = queued_at
            figures["during_post"] = [a for a, _, _ in during]
            figures["during_queued"] = [q for _, q, _ in during]
            figures["load_during"] = load_average()
            figures["api_rss_mib"] = rss_mib(stack.api_pid)

            asked = time.monotonic()
            cancelled = (await http.post(f"/batches/{batch_id}/cancel")).json()
            figures["cancel"] = time.monotonic() - asked
            figures["cancel_requested"] = cancelled["cancel_requested"]
    return figures


def print_report(args: argparse.Namespace, f: dict[str, Any]) -> None:
    priority = args.batch_priority or "default (4)"
    print(f"\nbatch of {args.items} items at priority {priority}, {platform.node()},"
          f" {os.cpu_count()} CPUs, load average before {f['load_before']},"
          f" during {f['load_during']}")  # fmt: skip
    print(f"  POST /batches answered in           {f['accept'] * 1000:8.1f} ms")
    print(f"  every item started (listed) after   {f['all_started']:8.1f} s")
    print(f"  every item queued for a GPU after   {f['all_queued']:8.1f} s")
    print(f"  POST /batches/{{id}}/cancel ({f['cancel_requested']} items)  {f['cancel']:6.1f} s")
    print(f"  API + control worker RSS            {f['api_rss_mib']:8.0f} MiB")
    print(f"single POST /generate ({args.singles} each):")
    print(f"  POST latency, alone          {spread(f['alone_post'])}")
    print(f"  POST latency, during batch   {spread(f['during_post'])}")
    print(f"  queued for a GPU, alone      {spread(f['alone_queued'])}")
    print(f"  queued for a GPU, during     {spread(f['during_queued'])}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=20)
    parser.add_argument("--single-interval", type=float, default=0.5)
    parser.add_argument(
        "--batch-priority",
        type=int,
        default=None,
        help="the items' priority (default: the batch default, 4); 3 = the singles' own",
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    print_report(args, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
