"""Short jobs: does the GPU wait when each job takes ComfyUI 100 ms? What each generation costs.

It starts its own stack on free loopback ports (bench/overhead.py's: a Temporal dev server on a
SQLite file, `comfy-temporal api --with-control-worker`, one `comfy-temporal gpu-worker`) with the
whole service confined to one CPU (`taskset -c 0`), and the ComfyUI emulator (tests/emulator) on the
other (`taskset -c 1`) with this process, which plays the clients. Beside it runs the raw Temporal
floor (bench/temporal_floor.py) on a second dev server with the same flags, on the service's CPU.
Every measure runs --rounds times, its two sides back to back (the load of a shared machine moves),
and the rounds' medians are reported.

Figures, side by side:
- backlog: --backlog prompts of --job-seconds of ComfyUI time, posted all at once through the
  service and, before that, straight to the same ComfyUI (ComfyUIClient.run_prompt); makespan
  service / direct, and from ComfyUI's own history (execution_start, execution_success): its idle
  time between prompts, the largest gap, the lead before the first prompt, the tail after the last;
- CPU per generation: --burst generations posted at once (jobs of --burst-job-seconds, 0 by default,
  so the service and not the GPU is the bottleneck); utime + stime from /proc of each process and
  its children (dev server, API + control worker, GPU worker), divided by the jobs, next to the
  floor's CPU per workflow for its own burst (dev server, SDK process);
- submits/s and completions/s of that burst, next to the floor's starts/s and completions/s;
- sequential overhead (end to end minus ComfyUI's execution) for --sequential jobs a round, one
  after another: straight to ComfyUI; through the service to the workflow's close time; as a
  client sees it polling GET /tasks/{id} every --poll-ms; and with the long poll
  GET /tasks/{id}?wait=S when the API answers one (detected by a 200 with the task ended); next to
  the floor's latency;
- the targets of the short-jobs issue as ratios, pass or fail.

`--comfyui-url URL --workflow ID --params JSON` measures a real ComfyUI (not pinned here: pin it
yourself, outside the service's CPUs). `--json [PATH]` writes every figure as JSON ('-': stdout).

Usage: python bench/short_jobs.py [--job-seconds 0.1] [--backlog 30] [--burst 100]
       [--sequential 10] [--rounds 3] [--service-cpus 0 --comfyui-cpus 1 | --no-pin]
       [--json [PATH]]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from activities.comfyui.client import ComfyUIClient  # noqa: E402
from activities.comfyui.prompt_run import outcome_from_history  # noqa: E402
from api.cli.devstack.http_server import free_port  # noqa: E402
from api.cli.devstack.temporal_server import (  # noqa: E402
    DEV_SERVER_DYNAMIC_CONFIG,
    DevServerConfig,
    TemporalDevServer,
)
from bench.overhead import (  # noqa: E402
    JOB_TIMEOUT,
    DistinctParams,
    Stack,
    own_stack,
    percentile,
    submit,
)
from bench.processes import CpuMeter, CpuPinning, command_prefix  # noqa: E402
from bench.temporal_floor import FloorProcess, floor_process  # noqa: E402
from tests.support.manifests import EMULATOR_WORKFLOW_ID  # noqa: E402

FINAL = {"SUCCESS", "FAILURE", "CANCELLED"}
SERVICE_ROLES = ("temporal", "api", "gpu-worker")
ROLE_LABELS = {
    "temporal": "Temporal dev server",
    "api": "API + control worker",
    "gpu-worker": "GPU worker",
    "sdk": "floor SDK process (client + 2 Workers)",
    "comfyui": "ComfyUI (not in the total)",
    "total": "total",
}
WARM_UP_JOBS = 3


# ---------------------------------------------------------------- figures


@dataclass
class Backlog:
    """One backlog run: makespan, and ComfyUI's execution spans (epoch seconds)."""

    makespan: float
    began: float
    ended: float
    spans: list[tuple[float, float]]

    @property
    def gaps(self) -> list[float]:
        ordered = sorted(self.spans)
        return [max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(ordered)]

    def summary(self) -> dict[str, float | int]:
        gaps = self.gaps
        return {
            "makespan_s": self.makespan,
            "prompts_seen": len(self.spans),
            "comfyui_busy_s": sum(b - a for a, b in self.spans),
            "comfyui_idle_s": sum(gaps),
            "max_gap_s": max(gaps, default=0.0),
            "lead_s": min(a for a, _ in self.spans) - self.began if self.spans else float("nan"),
            "tail_s": self.ended - max(b for _, b in self.spans) if self.spans else float("nan"),
        }


@dataclass
class Burst:
    """`count` generations (or floor workflows) at once: rates and CPU seconds by process."""

    count: int
    submitted_s: float
    completed_s: float
    cpu: dict[str, float]
    comfyui_busy_s: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "submits_per_s": self.count / self.submitted_s,
            "completions_per_s": self.count / self.completed_s,
            "cpu_ms_per_job": {k: v / self.count * 1000 for k, v in self.cpu.items()},
            "comfyui_busy_s": self.comfyui_busy_s,
        }


@dataclass
class Sequential:
    """Per job of the sequential runs, in seconds."""

    direct: list[float] = field(default_factory=list)  # run_prompt e2e - ComfyUI execution
    to_close: list[float] = field(default_factory=list)  # POST -> close, minus execution
    polled: list[float] = field(default_factory=list)  # POST -> poll sees it ended, minus exec.
    close_tail: list[float] = field(default_factory=list)  # ComfyUI's end -> workflow close
    poll_tail: list[float] = field(default_factory=list)  # ComfyUI's end -> poll sees it ended
    lead: list[float] = field(default_factory=list)  # POST -> ComfyUI's execution_start
    long_polled: list[float] = field(default_factory=list)  # POST -> ?wait= answers, minus exec.
    long_poll: str = "not measured"

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"long_poll": self.long_poll}
        for name in (
            "direct", "to_close", "polled", "long_polled", "close_tail", "poll_tail", "lead"
        ):  # fmt: skip
            values = getattr(self, name)
            out[name] = {
                "p50_s": percentile(values, 50),
                "p90_s": percentile(values, 90),
                "n": len(values),
            }
        return out


@dataclass
class Round:
    """One round: each comparison's two sides measured back to back, under the same load."""

    direct_backlog: Backlog
    service_backlog: Backlog
    floor_burst: Burst
    service_burst: Burst


# ---------------------------------------------------------------- ComfyUI's history


async def spans_since(comfy_http: httpx.AsyncClient, since: float, limit: int) -> dict[str, Any]:
    """Execution spans (epoch s) of ComfyUI's prompts that started at or after `since`, by id."""
    answer = await comfy_http.get("/history", params={"max_items": limit})
    answer.raise_for_status()
    since_ms = int(since * 1000) - 1  # ComfyUI's timestamps are whole milliseconds
    spans = {}
    for prompt_id, entry in answer.json().items():
        outcome = outcome_from_history(entry)
        if outcome.started_ms is None or outcome.finished_ms is None:
            continue
        if outcome.started_ms >= since_ms:
            spans[prompt_id] = (outcome.started_ms / 1000, outcome.finished_ms / 1000)
    return spans


# ---------------------------------------------------------------- the raw Temporal floor


@dataclass
class FloorStack:
    server_pid: int
    process: FloorProcess

    async def sequential(self, count: int) -> list[float]:
        latencies: list[float] = (await self.process.command("sequential", count))["latencies"]
        return latencies

    async def burst(self, count: int) -> Burst:
        meter = CpuMeter({"temporal": self.server_pid, "sdk": self.process.pid})
        meter.start()
        answer = await self.process.command("burst", count)
        return Burst(count, answer["started_s"], answer["completed_s"], meter.stop())


@asynccontextmanager
async def floor_stack(work: Path, pinning: CpuPinning | None) -> AsyncIterator[FloorStack]:
    """A dev server with the service's flags and the floor process, both on the service's CPUs."""
    prefix = command_prefix(pinning, "service")
    server = TemporalDevServer(
        DevServerConfig(
            db_file=work / "floor" / "temporal.db",
            port=free_port(),
            ui_port=None,
            log_file=work / "logs" / "floor-temporal.log",
        )
    )
    server.child.argv[:0] = prefix
    await server.start()
    try:
        async with floor_process(server.address, prefix, work / "logs" / "floor.log") as process:
            await process.command("sequential", WARM_UP_JOBS)
            assert server.pid is not None
            yield FloorStack(server.pid, process)
    finally:
        await server.stop()


# ---------------------------------------------------------------- the service


@dataclass
class Bench:
    stack: Stack
    http: httpx.AsyncClient
    comfy: ComfyUIClient
    comfy_http: httpx.AsyncClient
    workflow: str
    work: Path
    poll: float
    long_poll_wait: float

    def graph(self, params: dict[str, Any]) -> dict[str, Any]:
        assert self.stack.registry is not None
        return self.stack.registry.render(self.workflow, params).prompt

    async def wait_closed(self, task_ids: list[str]) -> None:
        """Until every task's workflow closed (a long poll on Temporal, not an interval)."""
        async with asyncio.timeout(JOB_TIMEOUT):
            await asyncio.gather(
                *(self.stack.temporal.get_workflow_handle(t).result() for t in task_ids)
            )

    async def poll_until_ended(self, task_id: str) -> tuple[float, dict[str, Any]]:
        """GET /tasks/{id} every `poll` s (fixed rate) until it ended: (epoch s seen, body)."""
        deadline = time.monotonic() + JOB_TIMEOUT
        tick = time.monotonic()
        while time.monotonic() < deadline:
            body = (await self.http.get(f"/tasks/{task_id}")).json()
            if body["status"] in FINAL:
                return time.time(), body
            tick += self.poll
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        raise RuntimeError(f"task {task_id} did not end within {JOB_TIMEOUT} s")

    async def long_poll(self, task_id: str) -> tuple[float, dict[str, Any]] | None:
        """GET /tasks/{id}?wait=S: (epoch s answered, body) when it answered with the task ended,
        None when the API answered before the end (no long poll there)."""
        answer = await self.http.get(
            f"/tasks/{task_id}",
            params={"wait": self.long_poll_wait},
            timeout=self.long_poll_wait + 30,
        )
        answered = time.time()
        if answer.status_code != 200:
            return None
        body = answer.json()
        return (answered, body) if body.get("status") in FINAL else None

    async def close_time(self, task_id: str) -> float:
        described = await self.stack.temporal.get_workflow_handle(task_id).describe()
        assert described.close_time is not None
        return described.close_time.timestamp()

    async def span_of_job(self, posted: float) -> tuple[float, float]:
        """The one prompt ComfyUI ran since `posted` (jobs here run one at a time)."""
        spans = await spans_since(self.comfy_http, posted, 5)
        if len(spans) != 1:
            raise RuntimeError(f"expected one prompt in ComfyUI since the POST, found {spans}")
        (span,) = spans.values()
        return span

    async def direct_once(self, params: dict[str, Any]) -> float:
        """One prompt straight to ComfyUI: end to end minus ComfyUI's execution."""
        started = time.monotonic()
        result = await self.comfy.run_prompt(
            self.graph(params), output_dir=self.work / "direct" / uuid.uuid4().hex
        )
        e2e = time.monotonic() - started
        return e2e - (result.execution_seconds or 0.0)

    async def service_once(self, params: dict[str, Any], seq: Sequential, *, long: bool) -> None:
        posted = time.time()
        task_id = await submit(self.http, self.workflow, params)
        seen: tuple[float, dict[str, Any]] | None = None
        if long:
            seen = await self.long_poll(task_id)
            seq.long_poll = (
                "measured"
                if seen is not None
                else "not supported by this API (answered before the task ended)"
            )
        if seen is None:
            seen = await self.poll_until_ended(task_id)
        ended_at, body = seen
        if body["status"] != "SUCCESS":
            raise RuntimeError(f"task {task_id} ended {body['status']}: {body.get('result')}")
        if long and seq.long_poll != "measured":
            return  # the probe that found no long poll: polled after a wasted GET, not counted
        closed = await self.close_time(task_id)
        start, end = await self.span_of_job(posted)
        execution = end - start
        seq.to_close.append(closed - posted - execution)
        seq.close_tail.append(closed - end)
        seq.lead.append(start - posted)
        if long:
            seq.long_polled.append(ended_at - posted - execution)
        else:
            seq.polled.append(ended_at - posted - execution)
            seq.poll_tail.append(ended_at - end)

    async def sequential(self, jobs: DistinctParams, count: int, seq: Sequential) -> None:
        """`count` jobs polled, each after a direct one (so both see the same load), then
        `count` on the long poll while the API answers one."""
        for _ in range(count):
            seq.direct.append(await self.direct_once(jobs.next()))
            await self.service_once(jobs.next(), seq, long=False)
        for _ in range(count):
            if seq.long_poll.startswith("not supported"):
                break
            await self.service_once(jobs.next(), seq, long=True)

    async def direct_backlog(self, params: list[dict[str, Any]]) -> Backlog:
        prompt_ids = [str(uuid.uuid4()) for _ in params]
        out = self.work / "direct-backlog"
        began, started = time.time(), time.monotonic()
        results = await asyncio.gather(
            *(
                self.comfy.run_prompt(self.graph(p), output_dir=out / i, prompt_id=i)
                for p, i in zip(params, prompt_ids, strict=True)
            )
        )
        makespan = time.monotonic() - started
        spans = [
            (r.started_ms / 1000, r.finished_ms / 1000)
            for r in results
            if r.started_ms is not None and r.finished_ms is not None
        ]
        return Backlog(makespan, began, began + makespan, spans)

    async def service_backlog(self, params: list[dict[str, Any]]) -> Backlog:
        began = time.time()
        task_ids = await asyncio.gather(*(submit(self.http, self.workflow, p) for p in params))
        await self.wait_closed(task_ids)
        ended = max(await asyncio.gather(*(self.close_time(t) for t in task_ids)))
        spans = await spans_since(self.comfy_http, began, len(params) + 10)
        return Backlog(ended - began, began, ended, list(spans.values()))

    async def burst(self, params: list[dict[str, Any]], pids: dict[str, int]) -> Burst:
        meter = CpuMeter(pids)
        meter.start()
        began, started = time.time(), time.monotonic()
        task_ids = await asyncio.gather(*(submit(self.http, self.workflow, p) for p in params))
        submitted = time.monotonic() - started
        await self.wait_closed(task_ids)
        completed = time.monotonic() - started
        cpu = meter.stop()
        spans = await spans_since(self.comfy_http, began, len(params) + 10)
        busy = sum(b - a for a, b in spans.values())
        return Burst(len(params), submitted, completed, cpu, busy)


def job_params(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    if args.params:
        params: dict[str, Any] = json.loads(args.params)
        return params
    steps = args.steps if seconds > 0 else 1
    return {"steps": steps, "seconds_per_step": round(seconds / steps, 6)}


@dataclass
class Measured:
    jobs: dict[str, Any]
    burst_jobs: dict[str, Any]
    sequential: Sequential  # pooled over the rounds
    floor_latencies: list[float]
    rounds: list[Round]


async def measure(args: argparse.Namespace, work: Path, pinning: CpuPinning | None) -> Measured:
    async with (
        floor_stack(work, pinning) as floor,
        own_stack(args, work, pinning) as stack,
        httpx.AsyncClient(base_url=stack.api_url, timeout=120) as http,
    ):
        assert stack.comfyui_url is not None
        async with (
            ComfyUIClient(stack.comfyui_url) as comfy,
            httpx.AsyncClient(base_url=stack.comfyui_url, timeout=60) as comfy_http,
        ):
            bench = Bench(
                stack, http, comfy, comfy_http, args.workflow, work,
                args.poll_ms / 1000, args.long_poll_wait,
            )  # fmt: skip
            info = (await http.get(f"/workflows/{args.workflow}")).json()
            jobs = DistinctParams(job_params(args, args.job_seconds), set(info["parameters"]))
            short = DistinctParams(job_params(args, args.burst_job_seconds), jobs.parameters)
            pids = {r: p for r, p in stack.pids.items() if r in (*SERVICE_ROLES, "comfyui")}

            # First-run costs (imports, sandbox, connections) are not per-job costs.
            await bench.sequential(jobs, WARM_UP_JOBS, Sequential())
            seq = Sequential()
            floor_latencies: list[float] = []
            rounds: list[Round] = []
            for _ in range(args.rounds):
                floor_latencies += await floor.sequential(args.sequential)
                await bench.sequential(jobs, args.sequential, seq)
                direct = await bench.direct_backlog(jobs.take(args.backlog))
                service = await bench.service_backlog(jobs.take(args.backlog))
                floor_burst = await floor.burst(args.burst)
                short.count = jobs.count  # image sizes ComfyUI has not seen yet
                burst = await bench.burst(short.take(args.burst), pids)
                jobs.count = short.count
                rounds.append(Round(direct, service, floor_burst, burst))
            return Measured(jobs.base, short.base, seq, floor_latencies, rounds)


# ---------------------------------------------------------------- report


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with local changes)" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _median(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field median of the rounds' summaries (nested dicts of numbers)."""
    out: dict[str, Any] = {}
    for key, first in summaries[0].items():
        values = [summary[key] for summary in summaries]
        if isinstance(first, dict):
            out[key] = _median(values)
        elif isinstance(first, int | float):
            numbers = [v for v in values if v is not None and v == v]
            out[key] = statistics.median(numbers) if numbers else None
        else:
            out[key] = first
    return out


def _cpu_total(burst: dict[str, Any], roles: tuple[str, ...]) -> float:
    return sum(v for k, v in burst["cpu_ms_per_job"].items() if k in roles)


def _round_summary(r: Round) -> dict[str, Any]:
    direct, service = r.direct_backlog.summary(), r.service_backlog.summary()
    mine, floor = r.service_burst.summary(), r.floor_burst.summary()
    mine["cpu_ms_per_job"]["total"] = _cpu_total(mine, SERVICE_ROLES)
    floor["cpu_ms_per_job"]["total"] = _cpu_total(floor, ("temporal", "sdk"))
    return {
        "backlog": {"direct": direct, "service": service},
        "burst": {"service": mine, "floor": floor},
        "ratios": {
            "backlog": service["makespan_s"] / direct["makespan_s"],
            "cpu": mine["cpu_ms_per_job"]["total"] / floor["cpu_ms_per_job"]["total"],
            "submits": mine["submits_per_s"] / floor["submits_per_s"],
            "completions": mine["completions_per_s"] / floor["completions_per_s"],
        },
    }


def build_report(
    args: argparse.Namespace, pinning: CpuPinning | None, measured: Measured, wall: float
) -> dict[str, Any]:
    rounds = [_round_summary(r) for r in measured.rounds]
    median = _median(rounds)
    seq = measured.sequential.summary()
    floor_p50 = percentile(measured.floor_latencies, 50)

    def target(
        name: str, key: str | None, value: float, limit: float, unit: str, higher: bool = False
    ) -> dict[str, Any]:
        return {
            "measure": name,
            "value": value,
            "rounds": [r["ratios"][key] for r in rounds] if key else None,
            "limit": limit,
            "unit": unit,
            "direction": ">=" if higher else "<=",
            "pass": value >= limit if higher else value <= limit,
        }

    ratios = median["ratios"]
    targets = [
        target(f"backlog of {args.backlog} x {args.job_seconds:g} s, makespan / direct",
               "backlog", ratios["backlog"], 1.05, "x"),
        target("CPU per generation / floor's per workflow", "cpu", ratios["cpu"], 1.15, "x"),
        target("submits/s / floor's starts/s", "submits", ratios["submits"], 0.8, "x",
               higher=True),
        target("completions/s / floor's completions/s", "completions", ratios["completions"],
               0.8, "x", higher=True),
        target(f"sequential overhead p50, polling every {args.poll_ms:g} ms", None,
               seq["polled"]["p50_s"] * 1000, floor_p50 * 1000 + 15, "ms"),
    ]  # fmt: skip
    if seq["long_polled"]["n"]:
        targets.append(
            target("sequential overhead p50, long poll", None, seq["long_polled"]["p50_s"] * 1000,
                   floor_p50 * 1000 + 15, "ms")
        )  # fmt: skip
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "commit": _git_commit(),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "pinning": asdict(pinning) if pinning else None,
        "comfyui": args.comfyui_url or "emulator",
        "dev_server_dynamic_config": list(DEV_SERVER_DYNAMIC_CONFIG),
        "workflow": args.workflow,
        "job_params": measured.jobs,
        "burst_job_params": measured.burst_jobs,
        "wall_s": wall,
        "poll_ms": args.poll_ms,
        "median": median,  # of the rounds
        "rounds": rounds,
        "sequential": seq,
        "floor_latency": {
            "p50_s": floor_p50,
            "p90_s": percentile(measured.floor_latencies, 90),
            "n": len(measured.floor_latencies),
        },
        "targets": targets,
    }


LABEL = 50  # width of the label column of the printed tables
CELL = 12


def _row(label: str, *cells: str) -> None:
    print(f"  {label:<{LABEL}}" + "".join(f"{c:>{CELL}}" for c in cells))


def _header(title: str, *columns: str) -> None:
    print()
    print(f"{title:<{LABEL + 2}}" + "".join(f"{c:>{CELL}}" for c in columns))


def _ms(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x * 1000:.0f}"


def print_report(r: dict[str, Any]) -> None:
    m = r["machine"]
    pin = r["pinning"]
    print()
    print(f"short jobs benchmark - ComfyUI: {r['comfyui']}, {r['workflow']} {r['job_params']}")
    print(f"{r['date']}, commit {r['commit']}, {r['wall_s']:.0f} s")
    print(f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}")
    where = (
        f"service on CPU {pin['service']}; ComfyUI and the clients on CPU {pin['comfyui']}"
        if pin
        else "nothing pinned"
    )
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_end"])
    print(f"{where}; load average at the end {load}")

    rounds = len(r["rounds"])
    print(f"medians of {rounds} rounds; each comparison's two sides run back to back")
    b = r["median"]["backlog"]
    direct, service = b["direct"], b["service"]
    _header(f"backlog of {direct['prompts_seen']:g} jobs posted at once", "direct", "service")
    _row("makespan, s", f"{direct['makespan_s']:.2f}", f"{service['makespan_s']:.2f}")
    for label, key in (
        ("ComfyUI idle between prompts, ms", "comfyui_idle_s"),
        ("largest gap, ms", "max_gap_s"),
        ("lead before the first prompt, ms", "lead_s"),
        ("tail after the last prompt, ms", "tail_s"),
    ):
        _row(label, _ms(direct[key]), _ms(service[key]))
    _row("ComfyUI busy, s", f"{direct['comfyui_busy_s']:.2f}", f"{service['comfyui_busy_s']:.2f}")

    s, f = r["median"]["burst"]["service"], r["median"]["burst"]["floor"]
    _header(f"{s['count']:g} generations posted at once", "service", "raw floor")
    _row(f"(jobs {r['burst_job_params']}, ComfyUI busy {s['comfyui_busy_s']:.2f} s)")
    _row("CPU per generation, ms")
    for role in (*SERVICE_ROLES, "sdk", "total"):
        mine, theirs = s["cpu_ms_per_job"].get(role), f["cpu_ms_per_job"].get(role)
        _row("  " + ROLE_LABELS[role], "-" if mine is None else f"{mine:.1f}",
             "-" if theirs is None else f"{theirs:.1f}")  # fmt: skip
    if "comfyui" in s["cpu_ms_per_job"]:
        _row("  " + ROLE_LABELS["comfyui"], f"{s['cpu_ms_per_job']['comfyui']:.1f}", "-")
    _row("submits/s (floor: starts/s)", f"{s['submits_per_s']:.1f}", f"{f['submits_per_s']:.1f}")
    _row("completions/s", f"{s['completions_per_s']:.1f}", f"{f['completions_per_s']:.1f}")

    q = r["sequential"]
    fl = r["floor_latency"]
    _header(f"{q['polled']['n']} sequential jobs: overhead, ms", "p50", "p90")
    _row("(end to end minus ComfyUI's own execution)")
    for label, key in (
        ("straight to ComfyUI (ComfyUIClient.run_prompt)", "direct"),
        ("service, POST to the workflow's close", "to_close"),
        (f"service, client polling GET /tasks every {r['poll_ms']:g} ms", "polled"),
        ("service, client on GET /tasks/{id}?wait=", "long_polled"),
    ):
        if key == "long_polled" and not q[key]["n"]:
            _row(label, q["long_poll"].split(" (")[0])
            continue
        _row(label, _ms(q[key]["p50_s"]), _ms(q[key]["p90_s"]))
    _row("raw floor latency (start to result)", _ms(fl["p50_s"]), _ms(fl["p90_s"]))
    _row("service: POST to ComfyUI's execution_start", _ms(q["lead"]["p50_s"]),
         _ms(q["lead"]["p90_s"]))  # fmt: skip
    _row("service: ComfyUI's end to the workflow's close", _ms(q["close_tail"]["p50_s"]),
         _ms(q["close_tail"]["p90_s"]))  # fmt: skip
    _row("service: ComfyUI's end to the client polling", _ms(q["poll_tail"]["p50_s"]),
         _ms(q["poll_tail"]["p90_s"]))  # fmt: skip

    _header("targets (median of the rounds)", "value", "target", "", "rounds")
    for t in r["targets"]:
        unit, op = t["unit"], t["direction"]
        if unit == "x":
            value, limit = f"{t['value']:.2f}x", f"{op} {t['limit']:.2f}x"
        else:
            value, limit = f"{t['value']:.0f} {unit}", f"{op} {t['limit']:.0f} {unit}"
        each = " ".join(f"{x:.2f}" for x in t["rounds"]) if t["rounds"] else ""
        _row(t["measure"], value, limit, "pass" if t["pass"] else "FAIL", f"  {each}")
    print()


# ---------------------------------------------------------------- main


def _finite(value: Any) -> Any:
    """NaN (a figure with no samples) as null, so the JSON is standard."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def run(args: argparse.Namespace, pinning: CpuPinning | None) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="comfy-short-jobs-") as tmp:
        measured = await measure(args, Path(tmp), pinning)
    return build_report(args, pinning, measured, time.monotonic() - started)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--comfyui-url", default=os.environ.get("COMFYUI_URL"),
        help="a real ComfyUI to measure (env COMFYUI_URL); default: the emulator",
    )  # fmt: skip
    parser.add_argument("--workflow", default=EMULATOR_WORKFLOW_ID)
    parser.add_argument(
        "--params", default=None,
        help="JSON params of every job (default: the emulator sampler at --job-seconds)",
    )  # fmt: skip
    parser.add_argument("--job-seconds", type=float, default=0.1,
                        help="emulator: ComfyUI time of a backlog / sequential job")  # fmt: skip
    parser.add_argument("--steps", type=int, default=4, help="emulator: sampler steps per job")
    parser.add_argument(
        "--burst-job-seconds", type=float, default=0.0,
        help="emulator: ComfyUI time of a burst job (0: the service is the bottleneck)",
    )  # fmt: skip
    parser.add_argument("--backlog", type=int, default=30)
    parser.add_argument("--burst", type=int, default=100, help="generations posted at once")
    parser.add_argument("--sequential", type=int, default=10, help="sequential jobs per round")
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="rounds of every measure; medians reported, so a burst of load elsewhere counts less",
    )  # fmt: skip
    parser.add_argument("--poll-ms", type=float, default=10, help="client's GET /tasks interval")
    parser.add_argument("--long-poll-wait", type=float, default=10, help="?wait= of the long poll")
    parser.add_argument("--service-cpus", default="0", help="taskset CPU list of the service")
    parser.add_argument("--comfyui-cpus", default="1", help="... of the emulator and clients")
    parser.add_argument("--no-pin", action="store_true", help="run everything unpinned")
    parser.add_argument(
        "--json", nargs="?", const="-", default=None, metavar="PATH",
        help="also write every figure as JSON to PATH ('-' or no PATH: stdout, no table)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.comfyui_url and (args.workflow == EMULATOR_WORKFLOW_ID or not args.params):
        sys.exit("with --comfyui-url, name a workflow of yours: --workflow ID --params JSON")
    pinning = None if args.no_pin else CpuPinning(args.service_cpus, args.comfyui_cpus)
    if pinning is not None:
        pinning.check()
        pinning.pin_self_to_comfyui()  # before any thread starts, so all inherit it
    report = _finite(asyncio.run(run(args, pinning)))
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: a finished Temporal client can abort the interpreter at exit


if __name__ == "__main__":
    main()
