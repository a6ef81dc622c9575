"""Scale: with up to 10,000 jobs queued and no GPU free, do POST /generate, GET /tasks/{id},
GET /tasks paging and the processes' memory stay flat?

It starts the stack of bench/batches.py (a Temporal dev server on a SQLite file and
`comfy-temporal api --with-control-worker`, serving `idle_pool_image` on a GPU pool no worker
polls), then fills the queue in steps of --step jobs (batches of 1,000 through POST /batches) and,
at each level once every job is queued for a GPU (the GPU queue's backlog), measures:
- POST /generate: --samples sequential singles, from sending to the 202;
- GET /tasks/{id}: --samples reads of queued jobs picked at random;
- GET /tasks: the first page (50 tasks), and a deep one, the last page of the whole listing
  reached by following next_page_token 100 tasks at a time;
- RSS (VmRSS from /proc) of the API process, which runs the control worker, and of the Temporal
  dev server.

Usage: python bench/scale.py [--jobs 10000] [--step 2500] [--samples 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from api.tasks.queues import queue_backlog  # noqa: E402
from bench.batches import IdleStack, idle_stack, load_average, rss_mib  # noqa: E402
from bench.overhead import percentile  # noqa: E402
from tests.support.manifests import IDLE_POOL_WORKFLOW_ID  # noqa: E402

BATCH = 1000  # the default COMFY_MAX_BATCH_ITEMS


@dataclass
class Level:
    queued: int
    fill_seconds: float
    post_ms: list[float]
    get_ms: list[float]
    first_page_ms: list[float]
    deep_page_ms: float
    deep_page_depth: int
    api_rss: float
    temporal_rss: float
    load: str


async def measure(
    http: httpx.AsyncClient,
    stack: IdleStack,
    queued: int,
    fill: float,
    samples: int,
    ids: list[str],
) -> Level:
    post_ms: list[float] = []
    for i in range(samples):
        sent = time.monotonic()
        response = await http.post(
            "/generate", json={"workflow_id": IDLE_POOL_WORKFLOW_ID, "params": {"width": 16 + i}}
        )
        post_ms.append((time.monotonic() - sent) * 1000)
        response.raise_for_status()
        ids.append(response.json()["task_id"])
    get_ms: list[float] = []
    for task_id in random.sample(ids, min(samples, len(ids))):
        sent = time.monotonic()
        (await http.get(f"/tasks/{task_id}")).raise_for_status()
        get_ms.append((time.monotonic() - sent) * 1000)
    first_ms: list[float] = []
    for _ in range(5):
        sent = time.monotonic()
        (await http.get("/tasks", params={"page_size": 50})).raise_for_status()
        first_ms.append((time.monotonic() - sent) * 1000)
    token: str | None = None
    depth = 0
    deep_ms = 0.0
    while True:
        params: dict[str, str | int] = {"page_size": 100}
        if token:
            params["page_token"] = token
        sent = time.monotonic()
        page = (await http.get("/tasks", params=params)).json()
        deep_ms = (time.monotonic() - sent) * 1000
        depth += len(page["tasks"])
        token = page.get("next_page_token")
        if not token:
            break
    return Level(
        queued=queued,
        fill_seconds=fill,
        post_ms=post_ms,
        get_ms=get_ms,
        first_page_ms=first_ms,
        deep_page_ms=deep_ms,
        deep_page_depth=depth,
        api_rss=rss_mib(stack.api_pid),
        temporal_rss=rss_mib(stack.temporal_pid),
        load=load_average(),
    )


async def run(args: argparse.Namespace) -> list[Level]:
    levels: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        async with (
            idle_stack(Path(tmp)) as stack,
            httpx.AsyncClient(base_url=stack.api_url, timeout=120) as http,
        ):
            ids: list[str] = []
            submitted = 0  # jobs sent so far: singles and batch items, all waiting for a GPU
            while True:
                started = time.monotonic()
                backlog = await queue_backlog(stack.temporal, stack.gpu_queue)
                while backlog < submitted:
                    await asyncio.sleep(0.5)
                    backlog = await queue_backlog(stack.temporal, stack.gpu_queue)
                level = await measure(
                    http, stack, backlog, time.monotonic() - started, args.samples, ids
                )
                submitted += args.samples
                levels.append(level)
                print_level(level, flush=True)
                if submitted >= args.jobs:
                    break
                step = min(args.step, args.jobs - submitted)
                for first in range(0, step, BATCH):
                    count = min(BATCH, step - first)
                    response = await http.post(
                        "/batches",
                        json={
                            "workflow_id": IDLE_POOL_WORKFLOW_ID,
                            "items": [{"width": 16 + i % 64} for i in range(count)],
                        },
                    )
                    response.raise_for_status()
                    batch_id = response.json()["batch_id"]
                    ids += [f"{batch_id}-{i}" for i in range(count)]
                submitted += step
    return levels


def _p(values: list[float]) -> str:
    return f"{percentile(values, 50):6.1f} / {percentile(values, 95):6.1f}"


def print_level(level: Level, *, flush: bool = False) -> None:
    print(
        f"{level.queued:7d} {level.fill_seconds:7.0f} s  {_p(level.post_ms)}   {_p(level.get_ms)}"
        f"   {percentile(level.first_page_ms, 50):6.1f}   {level.deep_page_ms:6.1f}"
        f" @{level.deep_page_depth:<6d} {level.api_rss:6.0f} {level.temporal_rss:6.0f}"
        f"   {level.load}",
        flush=flush,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--step", type=int, default=2500)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    print(f"scale: {platform.node()}, {os.cpu_count()} CPUs; latencies in ms (p50 / p95),"
          " RSS in MiB")  # fmt: skip
    print(" queued    fill   POST /generate    GET /tasks/{id}   page 1   deep page"
          "     API  Temporal  load average")  # fmt: skip
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
