"""Model-affinity routing against plain pool routing: model loads and makespan of a mixed backlog.

A Temporal dev server (in memory), the API with its control worker and 2 and 4 GPU workers in
this process, each driving a ComfyUI emulator (tests/emulator) that charges for loading a model:
a checkpoint's first use sleeps --load-seconds (its size × the emulator's
--emulator-load-seconds-per-gb) and it keeps --max-loaded models loaded, least recently used
dropped first. The backlog is --models checkpoints × --jobs-per-model jobs of --job-seconds each,
in a random order (--seed), posted to the API (POST /generate) all at once (--in-flight-per-gpu
0) or fed a few per GPU at a time, as a producer draining a queue does (2: at most 2 per GPU in
flight); the emulators count the loads. Each fleet size and feed runs with `--routing pool` and
`affinity`, back to back on fresh workers.

Usage: python bench/affinity.py [--workers 2 4] [--in-flight-per-gpu 0 2] [--models 4]
       [--jobs-per-model 25] [--job-seconds 0.2] [--load-seconds 1.0] [--affinity-wait 5]
       [--json [PATH]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from activities.workers.settings import RoutingSettings  # noqa: E402
from activities.workers.temporal_client import connect_temporal  # noqa: E402
from api.cli.devstack.http_server import free_port  # noqa: E402
from api.cli.devstack.temporal_server import DevServerConfig, TemporalDevServer  # noqa: E402
from tests.support.routing import (  # noqa: E402
    CHECKPOINTS,
    emulator_load_args,
    emulator_models,
    models_base,
    post_routed,
    routed_registry,
)
from tests.support.stack import generation_stack  # noqa: E402

MODEL_BYTES = 1_000_000_000  # sparse files: 1 GB each, so --load-seconds is seconds per GB


@dataclass
class Run:
    routing: str
    workers: int
    in_flight: int  # 0: the whole backlog posted at once
    jobs: int
    loads: int
    makespan_seconds: float
    warm: int
    cold: int


async def run_backlog(
    address: str, base: Path, routing: str, workers: int, order: list[str], args: argparse.Namespace
) -> Run:
    client = await connect_temporal(address)
    pool = f"affinity-{uuid.uuid4().hex[:6]}"
    # The API (with its control worker) routes as a deployment does: first tries at submit.
    async with (
        generation_stack(
            client,
            base / pool,
            routed_registry(base / pool, pool),
            pool=pool,
            routing=RoutingSettings(routing=routing, affinity_wait_seconds=args.affinity_wait),
        ) as stack,
        httpx.AsyncClient(base_url=stack.url, timeout=60) as http,
    ):
        for index in range(workers):
            models = models_base(base / pool / f"comfyui-{index}", MODEL_BYTES)
            emulator = [
                "--cache-none",
                *emulator_load_args(models, args.load_seconds, args.max_loaded),
            ]
            await stack.start_gpu_worker(
                f"gpu-{index}", extra_args=emulator, model_settings={"model_sets_kept": 1}
            )
        before = [(await emulator_models(w.emulator.url))["loads"] for w in stack.gpu_workers]
        in_flight = asyncio.Semaphore(args.in_flight or len(order))
        routed: list[str] = []

        async def one(model: str) -> None:
            async with in_flight:
                handle = await post_routed(http, client, model, args.job_seconds)
                result = await handle.result()
                routed.append(result.routing.routing if result.routing else "cold")

        started = time.monotonic()
        await asyncio.gather(*(one(model) for model in order))
        makespan = time.monotonic() - started
        after = [(await emulator_models(w.emulator.url))["loads"] for w in stack.gpu_workers]
    return Run(
        routing=routing,
        workers=workers,
        in_flight=args.in_flight,
        jobs=len(order),
        loads=sum(after) - sum(before),
        makespan_seconds=round(makespan, 1),
        warm=routed.count("warm"),
        cold=routed.count("cold"),
    )


async def main(args: argparse.Namespace) -> list[Run]:
    rng = random.Random(args.seed)
    models = CHECKPOINTS[: args.models]
    order = [model for model in models for _ in range(args.jobs_per_model)]
    rng.shuffle(order)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="affinity-bench-") as tmp:
        server = TemporalDevServer(DevServerConfig(db_file=None, port=free_port(), ui_port=None))
        await server.start()
        try:
            for workers in args.workers:
                for routing in ("pool", "affinity"):
                    run = await run_backlog(
                        f"127.0.0.1:{server.config.port}", Path(tmp), routing, workers, order, args
                    )
                    feed = f"{run.in_flight} in flight" if run.in_flight else "all at once"
                    print(
                        f"{run.workers} GPUs, {feed}, {run.routing:8s}: {run.loads:3d} loads, "
                        f"makespan {run.makespan_seconds:6.1f} s "
                        f"({run.warm} warm, {run.cold} cold)",
                        flush=True,
                    )
                    runs.append(run)
        finally:
            await server.stop()
    return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--models", type=int, default=4, choices=range(1, len(CHECKPOINTS) + 1))
    parser.add_argument("--jobs-per-model", type=int, default=25)
    parser.add_argument("--job-seconds", type=float, default=0.2)
    parser.add_argument("--load-seconds", type=float, default=1.0, help="per model load")
    parser.add_argument("--max-loaded", type=int, default=1, help="models a GPU keeps loaded")
    parser.add_argument("--affinity-wait", type=float, default=5.0)
    parser.add_argument(
        "--in-flight-per-gpu",
        type=int,
        nargs="+",
        default=[0, 2],
        help="jobs in flight per GPU; 0: the whole backlog at once",
    )
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    results: list[Run] = []
    for fleet in arguments.workers:
        for per_gpu in arguments.in_flight_per_gpu:
            fleet_args = argparse.Namespace(**vars(arguments))
            fleet_args.workers = [fleet]
            fleet_args.in_flight = per_gpu * fleet
            results += asyncio.run(main(fleet_args))
    if arguments.json is not None:
        text = json.dumps([asdict(r) for r in results], indent=2)
        if arguments.json == "-":
            print(text)
        else:
            Path(arguments.json).write_text(text + "\n")
