"""Soak: many short generations across two GPU worker processes while faults hit them at random.

It starts its own stack on free loopback ports: a Temporal dev server (SQLite file), a control
worker in this process, and two `comfy-temporal gpu-worker` processes, each launching the ComfyUI
emulator (tests/emulator) as its ComfyUI. Every job is a short `EmptyImage -> EmulatorSampler ->
SaveImage` prompt whose filename prefix names the job, so ComfyUI's own saved files say how often
each job really ran. While the backlog drains, a fault is injected every few seconds (seeded):

- kill -9 of a GPU worker process and of its ComfyUI (a host lost), then a fresh worker process;
- a ComfyUI crash mid-node (the worker's supervisor restarts it);
- every WebSocket of a ComfyUI dropped at once;
- a hang: one node goes silent until interrupted (the manifest's stall_timeout interrupts it);
- a stuck node: silent and deaf to the interrupt (the worker then restarts its ComfyUI).

At the end it prints: submitted, succeeded, failed with their reasons, lost (jobs that never
reached a final state: must be 0), duplicated (a job whose output folder holds anything but the
files of its one result, or that ComfyUI ran more often than it had attempts: must be 0), the
faults injected and the wall time. Exit code 1 when anything was lost or duplicated.

Usage: python bench/soak.py [--jobs 1000] [--seed 1] [--fault-every 3.0] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle  # noqa: E402
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError  # noqa: E402

from activities.io.output_store import LocalOutputStore  # noqa: E402
from activities.workers.control import build_control_worker  # noqa: E402
from activities.workers.temporal_client import connect_temporal  # noqa: E402
from api.cli.devstack.http_server import free_port  # noqa: E402
from api.cli.devstack.temporal_server import DevServerConfig, TemporalDevServer  # noqa: E402
from manifests.registry import ManifestRegistry  # noqa: E402
from temporal_workflows.names import GENERATION_WORKFLOW  # noqa: E402
from temporal_workflows.payloads import GenerationRequest, GenerationResult  # noqa: E402
from tests.support.worker_processes import GpuWorkerProcess  # noqa: E402

POOL = "soak"
STALL_TIMEOUT = 1.5
SAMPLER = "EmulatorSampler"

GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0},
        "_meta": {"title": "Empty Image"},
    },
    "2": {
        "class_type": SAMPLER,
        "inputs": {"images": ["1", 0], "steps": 3, "seconds_per_step": 0.02},
        "_meta": {"title": "Sampler"},
    },
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "soak"},
        "_meta": {"title": "Save Image"},
    },
}
BASE_YAML = """
filename_prefix:
  type: string
  default: soak
  max_length: 100
  targets: [{node: Save Image, input: filename_prefix}]
"""
# Five attempts: a job may meet several faults in a row (a kill takes its running and its
# prefetched job; a hang or crash may follow on the worker that retries it).
WORKFLOWS_YAML = f"""
soak_image:
  workflow_file: soak_image.json
  description: An empty image through the emulator's sampler, saved under the job's prefix.
  parameters: [filename_prefix]
  pool: {POOL}
  timeout: 60
  retries: 4
  stall_timeout: {STALL_TIMEOUT}
"""

FAULTS = ("kill_worker", "comfyui_crash", "drop_sockets", "hang", "stuck")


@dataclass
class FaultInjector:
    workers: list[GpuWorkerProcess]
    rng: random.Random
    every: float
    injected: collections.Counter = field(default_factory=collections.Counter)
    skipped: collections.Counter = field(default_factory=collections.Counter)

    async def run(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.every * self.rng.uniform(0.5, 1.5))
            if done.is_set():
                return
            kind = self.rng.choice(FAULTS)
            worker = self.rng.choice(self.workers)
            if await self.inject(kind, worker):
                self.injected[kind] += 1
            else:
                self.skipped[kind] += 1

    async def inject(self, kind: str, worker: GpuWorkerProcess) -> bool:
        if kind == "kill_worker":
            if not worker.running:
                return False
            await worker.kill()
            await worker.start()
            return True
        if kind == "comfyui_crash":
            # The emulator process exits when the next sampler starts; its restart has no fault.
            return await worker.set_faults(crash_on_node=SAMPLER)
        if kind == "drop_sockets":
            return await worker.set_faults(drop_websockets=True)
        if kind == "hang":
            return await worker.set_faults(
                hang_on_node=SAMPLER, hang_until_interrupted=True, hang_once=True
            )
        if kind == "stuck":
            return await worker.set_faults(hang_on_node=SAMPLER, hang_once=True)
        raise ValueError(kind)


@dataclass
class JobOutcome:
    task_id: str
    prefix: str
    status: str  # "SUCCESS", "FAILURE", "LOST"
    reason: str | None = None
    result: GenerationResult | None = None


async def follow(handle: WorkflowHandle, prefix: str) -> JobOutcome:
    try:
        result = await handle.result(rpc_timeout=None)
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            reason = cause.type or "ApplicationError"
        elif isinstance(cause, CancelledError):
            reason = "cancelled"
        elif isinstance(cause, TerminatedError):
            reason = "terminated"
        else:
            reason = type(cause).__name__
        return JobOutcome(handle.id, prefix, "FAILURE", reason)
    return JobOutcome(handle.id, prefix, "SUCCESS", result=result)


async def submit_all(
    client: Client, control_queue: str, jobs: int, run_key: str
) -> list[tuple[WorkflowHandle, str]]:
    limit = asyncio.Semaphore(32)

    async def one(index: int) -> tuple[WorkflowHandle, str]:
        prefix = f"j{index:05d}"
        async with limit:
            handle = await client.start_workflow(
                GENERATION_WORKFLOW,
                GenerationRequest(workflow_id="soak_image", params={"filename_prefix": prefix}),
                id=f"soak-{run_key}-{prefix}",
                task_queue=control_queue,
                result_type=GenerationResult,
            )
        return handle, prefix

    return list(await asyncio.gather(*(one(i) for i in range(jobs))))


def comfyui_saves(output_dirs: list[Path]) -> collections.Counter:
    """Files ComfyUI's SaveImage wrote, per job prefix ("j00042_00001_.png" -> "j00042")."""
    counts: collections.Counter = collections.Counter()
    for folder in output_dirs:
        if folder.is_dir():
            for path in folder.iterdir():
                counts[path.name.split("_", 1)[0]] += 1
    return counts


def account(
    outcomes: list[JobOutcome], store: LocalOutputStore, saves: collections.Counter
) -> tuple[list[str], list[str]]:
    """(duplicated, inconsistent): task ids with more than their one result's files in the
    store or more ComfyUI runs than attempts (its own and its infrastructure retries); successes
    whose files are missing."""
    duplicated: list[str] = []
    inconsistent: list[str] = []
    for outcome in outcomes:
        if outcome.status != "SUCCESS" or outcome.result is None:
            continue
        expected = sorted(o.filename for o in outcome.result.outputs)
        stored = [p.name for p in store.files(outcome.task_id)]
        runs = saves.get(outcome.prefix, 0)
        tries = outcome.result.attempts + outcome.result.infrastructure_retries
        if len(stored) > len(expected) or runs > tries:
            duplicated.append(outcome.task_id)
        elif stored != expected or runs == 0:
            inconsistent.append(outcome.task_id)
    return duplicated, inconsistent


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="comfy-soak-"))
    manifests_dir, workflows_dir, data_dir = base / "manifests", base / "workflows", base / "data"
    for folder in (manifests_dir, workflows_dir, data_dir):
        folder.mkdir()
    (manifests_dir / "base.yaml").write_text(BASE_YAML)
    (manifests_dir / "workflows.yaml").write_text(WORKFLOWS_YAML)
    (workflows_dir / "soak_image.json").write_text(json.dumps(GRAPH))
    registry = ManifestRegistry(manifests_dir, workflows_dir)
    snapshot = registry.snapshot()
    if snapshot.errors:
        raise SystemExit(f"soak manifests invalid: {[str(e) for e in snapshot.errors]}")

    server = TemporalDevServer(
        DevServerConfig(
            db_file=base / "temporal.db",
            port=free_port(),
            ui_port=None,
            log_file=base / "temporal.log",
        )
    )
    await server.start()
    workers = [
        GpuWorkerProcess(f"soak-gpu{i}", data_dir, server.address, base, pool=POOL)
        for i in range(2)
    ]
    rng = random.Random(args.seed)
    injector = FaultInjector(workers, rng, args.fault_every)
    done = asyncio.Event()
    report: dict[str, Any] = {"jobs": args.jobs, "seed": args.seed, "work_dir": str(base)}
    try:
        client = await connect_temporal(server.address)
        control_queue = f"soak-control-{uuid.uuid4().hex[:8]}"
        async with build_control_worker(client, registry, task_queue=control_queue):
            await asyncio.gather(*(w.start() for w in workers))
            started = time.monotonic()
            submitted = await submit_all(client, control_queue, args.jobs, uuid.uuid4().hex[:8])
            faults = asyncio.create_task(injector.run(done))
            followers = [asyncio.create_task(follow(h, p)) for h, p in submitted]
            # Ctrl-C or SIGTERM ends the wait early: what finished is still accounted for.
            interrupted = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, interrupted.set)
            stopper = asyncio.create_task(interrupted.wait())
            all_done = asyncio.ensure_future(asyncio.wait(followers))
            await asyncio.wait(
                {stopper, all_done}, timeout=args.deadline, return_when=asyncio.FIRST_COMPLETED
            )
            stopper.cancel()
            all_done.cancel()
            finished = {task for task in followers if task.done()}
            pending = [task for task in followers if not task.done()]
            report["interrupted"] = interrupted.is_set()
            done.set()
            await faults
            wall = time.monotonic() - started
            outcomes = [task.result() for task in finished]
            for task in pending:
                task.cancel()
            finished_ids = {o.task_id for o in outcomes}
            for handle, prefix in submitted:
                if handle.id not in finished_ids:
                    outcomes.append(JobOutcome(handle.id, prefix, "LOST", "never finished"))
    finally:
        done.set()
        for worker in workers:
            await worker.stop()
        await server.stop()

    saves = comfyui_saves([w.comfyui_output_dir for w in workers])
    duplicated, inconsistent = account(outcomes, LocalOutputStore(data_dir), saves)
    succeeded = [o for o in outcomes if o.status == "SUCCESS"]
    attempts = collections.Counter(o.result.attempts for o in succeeded if o.result)
    infrastructure_retries = collections.Counter(
        o.result.infrastructure_retries for o in succeeded if o.result
    )
    report.update(
        submitted=len(submitted),
        succeeded=len(succeeded),
        failed=dict(collections.Counter(o.reason for o in outcomes if o.status == "FAILURE")),
        lost=sum(1 for o in outcomes if o.status == "LOST"),
        duplicated=len(duplicated),
        inconsistent=len(inconsistent),
        succeeded_by_attempts={str(k): v for k, v in sorted(attempts.items())},
        succeeded_by_infrastructure_retries={
            str(k): v for k, v in sorted(infrastructure_retries.items())
        },
        comfyui_runs=sum(saves.values()),
        faults_injected=dict(injector.injected),
        faults_skipped=dict(injector.skipped),
        worker_starts={w.name: w.starts for w in workers},
        wall_seconds=round(wall, 1),
        jobs_per_second=round(len(submitted) / wall, 2) if wall else None,
        duplicated_tasks=duplicated[:10],
        inconsistent_tasks=inconsistent[:10],
    )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"submitted:   {report['submitted']}")
    print(f"succeeded:   {report['succeeded']}  (by attempts: {report['succeeded_by_attempts']})")
    print(f"  by infrastructure retries: {report['succeeded_by_infrastructure_retries']}")
    failed = report["failed"]
    print(f"failed:      {sum(failed.values())}")
    for reason, count in sorted(failed.items(), key=lambda item: -item[1]):
        print(f"  {reason}: {count}")
    print(f"lost:        {report['lost']}")
    print(f"duplicated:  {report['duplicated']}")
    if report["inconsistent"]:
        print(f"inconsistent (missing files): {report['inconsistent']}")
    print(f"faults:      {report['faults_injected']} (skipped: {report['faults_skipped']})")
    print(f"ComfyUI runs: {report['comfyui_runs']} for {report['succeeded']} successes")
    print(
        f"wall time:   {report['wall_seconds']} s ({report['jobs_per_second']} jobs/s) "
        f"on {os.cpu_count()} cores"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="generations to submit")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule")
    parser.add_argument(
        "--fault-every", type=float, default=3.0, help="mean seconds between injected faults"
    )
    parser.add_argument(
        "--deadline", type=float, default=3600.0, help="seconds to wait for every job to finish"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    report = asyncio.run(soak(args))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if report["lost"] or report["duplicated"] else 0


if __name__ == "__main__":
    sys.exit(main())
