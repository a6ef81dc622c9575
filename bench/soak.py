"""Soak: many short generations across two GPU worker processes while faults hit them at random.

It starts its own stack on free loopback ports: a Temporal dev server (SQLite file), two
`comfy-temporal control-worker` processes and two `comfy-temporal gpu-worker` processes, each
launching the ComfyUI emulator (tests/emulator) as its ComfyUI, which leaks memory run after run
(`--leak-mb-per-prompt`) while its worker recycles it past `--recycle-rss-mb`. Every job is a short
`EmptyImage -> EmulatorSampler -> SaveImage` prompt whose filename prefix names the job, so
ComfyUI's own saved files say how often each job really ran. While the backlog drains, a fault
is injected every few seconds (seeded):

- kill -9 of a GPU worker process and of its ComfyUI (a host lost), then a fresh worker process;
- a ComfyUI crash mid-node (the worker's supervisor restarts it);
- every WebSocket of a ComfyUI dropped at once;
- a hang: one node goes silent until interrupted (the manifest's stall_timeout interrupts it);
- a stuck node: silent and deaf to the interrupt (the worker then restarts its ComfyUI);
- memory growth: the next prompt leaks far past the limit (the worker recycles its ComfyUI);
- a rolling restart: SIGTERM to each GPU worker in turn, then to each control worker, a fresh
  process after each (in the background: the other faults go on meanwhile).

At the end it prints: submitted, succeeded, failed with their reasons, lost (jobs that never
reached a final state: must be 0), duplicated (a job whose output folder holds anything but the
files of its one result, or that ComfyUI ran more often than its attempts and infrastructure
retries explain: must be 0), the jobs whose `retries` were spent (every fault here is the
infrastructure's, so any is one too many: must be 0) with the failures that spent them, the
faults injected by kind, the recycles, the workers' exit codes after SIGTERM, the wall time and
the load average. Exit code 1 when anything failed, was lost or duplicated, or spent `retries`.

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
import re
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
from activities.workers.temporal_client import connect_temporal  # noqa: E402
from api.cli.devstack.http_server import free_port  # noqa: E402
from api.cli.devstack.temporal_server import DevServerConfig, TemporalDevServer  # noqa: E402
from manifests.registry import ManifestRegistry  # noqa: E402
from temporal_workflows.names import CONTROL_TASK_QUEUE, GENERATION_WORKFLOW  # noqa: E402
from temporal_workflows.payloads import GenerationRequest, GenerationResult  # noqa: E402
from tests.support.worker_processes import (  # noqa: E402
    ControlWorkerProcess,
    GpuWorkerProcess,
    WorkerProcess,
)

POOL = "soak"
STALL_TIMEOUT = 1.5
SAMPLER = "EmulatorSampler"
# The emulator starts at about 45 MiB resident and leaks 1 MiB per prompt: left alone, it passes
# the limit after about a hundred prompts; the memory_growth fault passes it at once.
LEAK_MB_PER_PROMPT = 1
RECYCLE_RSS_MB = 160
LEAK_SPIKE_MB = 128
# On SIGTERM a GPU worker lets its running job finish (a stuck node takes stall_timeout + 5 s).
SHUTDOWN_GRACE = 30

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
# The default `retries`: every fault injected here is the infrastructure's, retried until the
# deadline without spending them, so a job that spends one shows in the report.
WORKFLOWS_YAML = f"""
soak_image:
  workflow_file: soak_image.json
  description: An empty image through the emulator's sampler, saved under the job's prefix.
  parameters: [filename_prefix]
  pool: {POOL}
  timeout: 60
  retries: 2
  stall_timeout: {STALL_TIMEOUT}
"""

FAULTS = (
    "kill_worker",
    "comfyui_crash",
    "drop_sockets",
    "hang",
    "stuck",
    "memory_growth",
    "rolling_restart",
)


@dataclass
class FaultInjector:
    gpus: list[GpuWorkerProcess]
    controls: list[ControlWorkerProcess]
    rng: random.Random
    every: float
    injected: collections.Counter = field(default_factory=collections.Counter)
    skipped: collections.Counter = field(default_factory=collections.Counter)
    # Exit codes after SIGTERM in the rolling restarts ("timeout" when one did not exit).
    exits: collections.Counter = field(default_factory=collections.Counter)
    rolling_restarts_done: int = 0
    _restarting: dict[str, asyncio.Lock] = field(default_factory=dict)
    _rolling: asyncio.Task | None = None

    def lock(self, worker: WorkerProcess) -> asyncio.Lock:
        """Held while `worker` is stopped and started again: a kill waits for no restart."""
        return self._restarting.setdefault(worker.name, asyncio.Lock())

    async def run(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.every * self.rng.uniform(0.5, 1.5))
            if done.is_set():
                break
            kind = self.rng.choice(FAULTS)
            worker = self.rng.choice(self.gpus)
            if await self.inject(kind, worker):
                self.injected[kind] += 1
            else:
                self.skipped[kind] += 1
        if self._rolling is not None:
            await self._rolling  # the fleet whole again, and a failure of it raised here

    async def inject(self, kind: str, worker: GpuWorkerProcess) -> bool:
        if kind == "kill_worker":
            if not worker.running or self.lock(worker).locked():
                return False
            async with self.lock(worker):
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
        if kind == "memory_growth":
            return await worker.set_faults(leak_mb=LEAK_SPIKE_MB)
        if kind == "rolling_restart":
            if self._rolling is not None and not self._rolling.done():
                return False
            if self._rolling is not None:
                await self._rolling  # raises what went wrong in the previous one
            self._rolling = asyncio.create_task(self.rolling_restart(), name="rolling restart")
            return True
        raise ValueError(kind)

    async def rolling_restart(self) -> None:
        """SIGTERM to every GPU worker, one after the other, then to every control worker, each
        started again before the next one stops (a deploy)."""
        for worker in [*self.gpus, *self.controls]:
            async with self.lock(worker):
                if worker.running:
                    try:
                        self.exits[str(await worker.terminate(timeout=SHUTDOWN_GRACE + 30))] += 1
                    except TimeoutError:
                        self.exits["timeout"] += 1
                        await worker.kill()
                await worker.start()
        self.rolling_restarts_done += 1


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


async def submit_all(client: Client, jobs: int, run_key: str) -> list[tuple[WorkflowHandle, str]]:
    limit = asyncio.Semaphore(32)

    async def one(index: int) -> tuple[WorkflowHandle, str]:
        prefix = f"j{index:05d}"
        async with limit:
            handle = await client.start_workflow(
                GENERATION_WORKFLOW,
                GenerationRequest(workflow_id="soak_image", params={"filename_prefix": prefix}),
                id=f"soak-{run_key}-{prefix}",
                task_queue=CONTROL_TASK_QUEUE,
                result_type=GenerationResult,
            )
        return handle, prefix

    return list(await asyncio.gather(*(one(i) for i in range(jobs))))


async def failures_in_history(client: Client, task_id: str) -> list[str]:
    """The failures that ended the job's execute activities: each one that came back to the
    workflow (the infrastructure's are retried in place and never do, unless misclassified)."""
    history = await client.get_workflow_handle(task_id).fetch_history()
    found = []
    for event in history.events:
        if event.HasField("activity_task_failed_event_attributes"):
            failure = event.activity_task_failed_event_attributes.failure
            found.append(failure.application_failure_info.type or failure.message)
        elif event.HasField("activity_task_timed_out_event_attributes"):
            found.append("timed out")
    return found


def comfyui_saves(output_dirs: list[Path]) -> collections.Counter:
    """Files ComfyUI's SaveImage wrote, per job prefix ("j00042_00001_.png" -> "j00042")."""
    counts: collections.Counter = collections.Counter()
    for folder in output_dirs:
        if folder.is_dir():
            for path in folder.iterdir():
                counts[path.name.split("_", 1)[0]] += 1
    return counts


RECYCLED = re.compile(r": recycling ComfyUI \((\w+)\)")


def recycles(workers: list[GpuWorkerProcess]) -> collections.Counter:
    """ComfyUI restarts the workers made between jobs, by reason, from their logs."""
    counts: collections.Counter = collections.Counter()
    for worker in workers:
        if worker.log_path.exists():
            counts.update(RECYCLED.findall(worker.log_path.read_text(errors="replace")))
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
    snapshot = ManifestRegistry(manifests_dir, workflows_dir).snapshot()
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
    gpus = [
        GpuWorkerProcess(
            f"soak-gpu{i}",
            data_dir,
            server.address,
            base,
            pool=POOL,
            shutdown_grace=SHUTDOWN_GRACE,
            extra_args=[
                f"--comfyui-arg=--leak-mb-per-prompt={LEAK_MB_PER_PROMPT}",
                "--recycle-rss-mb",
                str(RECYCLE_RSS_MB),
            ],
        )
        for i in range(2)
    ]
    controls = [
        ControlWorkerProcess(
            f"soak-control{i}",
            server.address,
            base,
            manifests_dir=manifests_dir,
            workflows_dir=workflows_dir,
            data_dir=data_dir,
        )
        for i in range(2)
    ]
    rng = random.Random(args.seed)
    injector = FaultInjector(gpus, controls, rng, args.fault_every)
    done = asyncio.Event()
    report: dict[str, Any] = {"jobs": args.jobs, "seed": args.seed, "work_dir": str(base)}
    try:
        client = await connect_temporal(server.address)
        await asyncio.gather(*(w.start() for w in [*controls, *gpus]))
        report["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
        started = time.monotonic()
        submitted = await submit_all(client, args.jobs, uuid.uuid4().hex[:8])
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
        wall = time.monotonic() - started
        report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        done.set()
        await faults
        outcomes = [task.result() for task in finished]
        for task in pending:
            task.cancel()
        finished_ids = {o.task_id for o in outcomes}
        for handle, prefix in submitted:
            if handle.id not in finished_ids:
                outcomes.append(JobOutcome(handle.id, prefix, "LOST", "never finished"))
        # Every job that spent `retries` (its attempts > 1) or failed, with what ended its tries.
        spent = [
            o
            for o in outcomes
            if o.status == "FAILURE" or (o.result is not None and o.result.attempts > 1)
        ]
        spent_by = {o.task_id: await failures_in_history(client, o.task_id) for o in spent}
    finally:
        done.set()
        for worker in [*gpus, *controls]:
            await worker.stop()
        await server.stop()

    saves = comfyui_saves([w.comfyui_output_dir for w in gpus])
    duplicated, inconsistent = account(outcomes, LocalOutputStore(data_dir), saves)
    succeeded = [o for o in outcomes if o.status == "SUCCESS"]
    attempts = collections.Counter(o.result.attempts for o in succeeded if o.result)
    infrastructure_retries = collections.Counter(
        o.result.infrastructure_retries for o in succeeded if o.result
    )
    retries_spent = [o for o in succeeded if o.result and o.result.attempts > 1]
    report.update(
        submitted=len(submitted),
        succeeded=len(succeeded),
        failed=dict(collections.Counter(o.reason for o in outcomes if o.status == "FAILURE")),
        lost=sum(1 for o in outcomes if o.status == "LOST"),
        duplicated=len(duplicated),
        inconsistent=len(inconsistent),
        retries_spent=len(retries_spent),
        retries_spent_by=dict(
            collections.Counter(t for o in retries_spent for t in spent_by[o.task_id])
        ),
        failures_before_failing={
            o.task_id: spent_by[o.task_id] for o in outcomes if o.status == "FAILURE"
        },
        succeeded_by_attempts={str(k): v for k, v in sorted(attempts.items())},
        succeeded_by_infrastructure_retries={
            str(k): v for k, v in sorted(infrastructure_retries.items())
        },
        comfyui_runs=sum(saves.values()),
        faults_injected=dict(injector.injected),
        faults_skipped=dict(injector.skipped),
        rolling_restarts_done=injector.rolling_restarts_done,
        exit_codes_after_sigterm=dict(injector.exits),
        comfyui_recycled=dict(recycles(gpus)),
        worker_starts={w.name: w.starts for w in [*gpus, *controls]},
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
    for task_id, failures in list(report["failures_before_failing"].items())[:10]:
        print(f"  {task_id}: execute activities ended by {failures}")
    print(f"lost:        {report['lost']}")
    print(f"duplicated:  {report['duplicated']}")
    if report["inconsistent"]:
        print(f"inconsistent (missing files): {report['inconsistent']}")
    print(
        f"retries spent by infrastructure faults: {report['retries_spent']} jobs"
        + (f" (by {report['retries_spent_by']})" if report["retries_spent"] else "")
    )
    print(f"faults:      {report['faults_injected']} (skipped: {report['faults_skipped']})")
    print(
        f"rolling restarts completed: {report['rolling_restarts_done']}, exit codes after "
        f"SIGTERM: {report['exit_codes_after_sigterm']}"
    )
    print(f"ComfyUI recycled: {report['comfyui_recycled']}")
    print(f"worker starts: {report['worker_starts']}")
    print(f"ComfyUI runs: {report['comfyui_runs']} for {report['succeeded']} successes")
    print(
        f"wall time:   {report['wall_seconds']} s ({report['jobs_per_second']} jobs/s) "
        f"on {os.cpu_count()} cores; load average {report['load_average_at_start']} at the "
        f"start, {report['load_average_at_end']} at the end"
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
    bad = (
        report["failed"]
        or report["lost"]
        or report["duplicated"]
        or report["inconsistent"]
        or report["retries_spent"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
