"""What the service adds on top of ComfyUI: per-job overhead, backlog makespan, submit throughput.

By default it starts its own stack on free loopback ports: a Temporal dev server (SQLite file),
`comfy-temporal api --with-control-worker`, one `comfy-temporal gpu-worker` attached to the ComfyUI
emulator (tests/emulator), and runs `emulator_sampler` jobs (10 steps x 0.05 s, so each job takes
ComfyUI about half a second). `--comfyui-url URL` runs the same against a real ComfyUI (pick a
workflow with `--workflow` / `--params`); `--api URL` measures a stack that is already running.

Figures:
- service overhead per job: sequential pairs, each the same kind of prompt once driven straight
  through ComfyUIClient.run_prompt (the direct end to end: WebSocket, submit, done signal, output
  download) and once through the service (from just before POST /generate to the workflow's close
  time in Temporal); the overhead is service minus direct, pair by pair. The close time is used
  rather than the moment a GET /tasks poll sees SUCCESS, so the poll interval is not measured.
  Also shown: the older figure, service end to end minus ComfyUI's own execution time
  (execution_start to success), which charges the service with ComfyUI's per-prompt costs too.
- `--breakdown`: the p50 of each stage of a service job, from Temporal history event times, the
  execute activity's own timestamps and ComfyUI's execution_start / execution_success.
- backlog makespan: the same prompts posted all at once through the service, divided by the
  makespan of posting them straight to ComfyUI (ComfyUIClient), which is the floor; with the idle
  gaps of ComfyUI (one prompt's success to the next one's start, from ComfyUI's history).
- submit throughput: POST /generate requests per second from concurrent clients.

Usage: python bench/overhead.py [--jobs 30] [--backlog 20] [--submit 200] [--breakdown]
       [--comfyui-url URL] [--api URL --temporal-address HOST:PORT] [--workflow ID --params JSON]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402

from activities.comfyui.client import ComfyUIClient  # noqa: E402
from activities.comfyui.prompt_run import outcome_from_history  # noqa: E402
from activities.workers.temporal_client import connect_temporal  # noqa: E402
from api.cli.devstack.child_process import ChildProcess  # noqa: E402
from api.cli.devstack.http_server import free_port  # noqa: E402
from api.cli.devstack.temporal_server import DevServerConfig, TemporalDevServer  # noqa: E402
from bench.processes import CpuPinning, PinnedComfyUIProcess, command_prefix  # noqa: E402
from manifests.registry import ManifestRegistry  # noqa: E402
from temporal_workflows.payloads import ExecuteResult  # noqa: E402
from tests.support.manifests import (  # noqa: E402
    EMULATOR_WORKFLOW_ID,
    write_manifests_with_emulator_sampler,
)

EMULATOR_DIR = REPO_ROOT / "tests" / "emulator"
DEFAULT_PARAMS = {"steps": 10, "seconds_per_step": 0.05}
# A job stuck this long (a failing workflow task retries forever) ends the run with an error.
JOB_TIMEOUT = 300


@dataclass
class Stack:
    api_url: str
    temporal: Client
    comfyui_url: str | None
    registry: ManifestRegistry | None
    # The root process of each role (temporal, api, gpu-worker, comfyui when started here), for
    # CPU figures from /proc.
    pids: dict[str, int] = field(default_factory=dict)


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
async def own_stack(
    args: argparse.Namespace, work: Path, pinning: CpuPinning | None = None
) -> AsyncIterator[Stack]:
    """Dev server, emulator (unless args.comfyui_url), GPU worker and API on free ports; with
    `pinning`, the service runs on its CPUs and the emulator on ComfyUI's."""
    service_prefix = command_prefix(pinning, "service")
    async with AsyncExitStack() as stack:
        pids: dict[str, int] = {}
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
        server.child.argv[:0] = service_prefix
        await server.start()
        stack.push_async_callback(server.stop)
        assert server.pid is not None
        pids["temporal"] = server.pid

        comfyui_url = args.comfyui_url
        if comfyui_url is None:
            emulator = PinnedComfyUIProcess(
                EMULATOR_DIR,
                prefix=command_prefix(pinning, "comfyui"),
                work_dir=work / "comfyui",
                python=sys.executable,
                extra_args=["--cpu"],
                name="emulator",
            )
            await emulator.start()
            stack.push_async_callback(emulator.stop)
            comfyui_url = emulator.url
            assert emulator.pid is not None
            pids["comfyui"] = emulator.pid

        env = dict(os.environ, TEMPORAL_ADDRESS=server.address)
        for name in ("COMFYUI_PATH", "COMFYUI_URL", "COMFYUI_ARGS", "TEMPORAL_NAMESPACE"):
            env.pop(name, None)
        cli = [sys.executable, "-m", "api.cli.main"]
        gpu = ChildProcess(
            "gpu-worker",
            [*service_prefix, *cli, "gpu-worker", "--comfyui-url", comfyui_url,
             "--data-dir", str(data_dir), "--name", "bench-gpu"],
            env=env,
            cwd=REPO_ROOT,
            log_path=work / "logs" / "gpu-worker.log",
        )  # fmt: skip
        await gpu.start()
        stack.push_async_callback(gpu.stop)
        api_port = free_port()
        api = ChildProcess(
            "api",
            [*service_prefix, *cli, "api", "--with-control-worker", "--port", str(api_port),
             "--data-dir", str(data_dir), "--manifests", str(manifests_dir),
             "--workflows", str(workflows_dir), "--log-level", "warning"],
            env=env,
            cwd=REPO_ROOT,
            log_path=work / "logs" / "api.log",
        )  # fmt: skip
        await api.start()
        stack.push_async_callback(api.stop)
        assert gpu.pid is not None and api.pid is not None
        pids["gpu-worker"], pids["api"] = gpu.pid, api.pid
        api_url = f"http://127.0.0.1:{api_port}"
        await wait_ready(api_url, [gpu, api])
        temporal = await connect_temporal(server.address, "default")
        registry = ManifestRegistry(manifests_dir, workflows_dir)
        yield Stack(api_url, temporal, comfyui_url, registry, pids)


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
    try:
        async with asyncio.timeout(JOB_TIMEOUT):
            await handle.result()
    except TimeoutError:
        raise RuntimeError(f"task {task_id} did not finish within {JOB_TIMEOUT} s") from None
    close_time = (await handle.describe()).close_time
    assert close_time is not None
    body = (await http.get(f"/tasks/{task_id}")).json()
    if body["status"] != "SUCCESS":
        raise RuntimeError(f"task {task_id} ended {body['status']}: {body.get('result')}")
    return close_time, body


# Stages of one service job, in order: (label, start point, end point). Points are wall-clock
# times: the benchmark's own (posted, accepted), Temporal history event times, the execute
# activity's ExecuteResult timestamps (worker clock) and ComfyUI's history timestamps. Everything
# runs on one host, so the clocks agree.
STAGES = (
    ("POST /generate answered", "posted", "accepted"),
    ("POST -> workflow started (event)", "posted", "wf_started"),
    ("workflow started -> 1st workflow task started", "wf_started", "wft1_started"),
    ("1st workflow task (prepare, sandbox)", "wft1_started", "wft1_completed"),
    ("workflow task completed -> activity scheduled", "wft1_completed", "act_scheduled"),
    ("activity scheduled -> started (poll match)", "act_scheduled", "act_started"),
    ("activity started -> running in worker", "act_started", "act_running"),
    ("activity running -> ComfyUI execution_start", "act_running", "comfy_start"),
    ("ComfyUI execution (start -> success)", "comfy_start", "comfy_success"),
    ("ComfyUI success -> activity returned", "comfy_success", "act_returned"),
    ("activity returned -> completed (event)", "act_returned", "act_completed"),
    ("activity completed -> 2nd workflow task started", "act_completed", "wft2_started"),
    ("2nd workflow task", "wft2_started", "wft2_completed"),
    ("workflow task completed -> workflow closed", "wft2_completed", "closed"),
)


def _event_time(event: Any) -> datetime:
    return event.event_time.ToDatetime(tzinfo=UTC)


def _from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


async def comfy_times(comfy: ComfyUIClient, prompt_id: str) -> tuple[int | None, int | None]:
    """ComfyUI's execution_start and execution_success timestamps (ms) from its history."""
    entry = await comfy.history(prompt_id)
    if entry is None:
        return None, None
    outcome = outcome_from_history(entry)
    return outcome.started_ms, outcome.finished_ms


async def stage_points(
    stack: Stack, comfy: ComfyUIClient | None, task_id: str, posted: datetime, accepted: datetime
) -> dict[str, datetime | None]:
    """The points of STAGES for one finished service job."""
    handle = stack.temporal.get_workflow_handle(task_id)
    history = await handle.fetch_history()
    by_type: dict[int, list[Any]] = {}
    for event in history.events:
        by_type.setdefault(event.event_type, []).append(event)

    def first(kind: int) -> datetime | None:
        events = by_type.get(kind)
        return _event_time(events[0]) if events else None

    def last(kind: int) -> datetime | None:
        events = by_type.get(kind)
        return _event_time(events[-1]) if events else None

    points: dict[str, datetime | None] = {
        "posted": posted,
        "accepted": accepted,
        "wf_started": first(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        "wft1_started": first(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        "wft1_completed": first(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        "act_scheduled": first(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        "act_started": last(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED),
        "act_completed": first(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED),
        "wft2_started": last(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED),
        "wft2_completed": last(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        "closed": first(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
        "act_running": None,
        "act_returned": None,
        "comfy_start": None,
        "comfy_success": None,
    }
    completed = by_type.get(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    if completed:
        payloads = completed[0].activity_task_completed_event_attributes.result.payloads
        (result,) = await stack.temporal.data_converter.decode(payloads, [ExecuteResult])
        points["act_running"] = result.queued_at
        points["act_returned"] = result.finished_at
        if comfy is not None:
            start_ms, success_ms = await comfy_times(comfy, result.comfy_prompt_id)
            points["comfy_start"] = _from_ms(start_ms)
            points["comfy_success"] = _from_ms(success_ms)
    return points


def stage_seconds(points: dict[str, datetime | None]) -> dict[str, float]:
    stages: dict[str, float] = {}
    for label, begin, end in STAGES:
        a, b = points.get(begin), points.get(end)
        if a is not None and b is not None:
            stages[label] = (b - a).total_seconds()
    return stages


@dataclass
class SequentialRun:
    """Per-job figures of the sequential pairs."""

    direct: list[float] = field(default_factory=list)  # ComfyUIClient.run_prompt end to end
    e2e: list[float] = field(default_factory=list)  # service: POST -> workflow closed
    comfy: list[float] = field(default_factory=list)  # ComfyUI's own execution (service jobs)
    post: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)

    @property
    def overhead(self) -> list[float]:
        """Service minus direct, pair by pair (the same ComfyUI, the same kind of prompt)."""
        return [s - d for s, d in zip(self.e2e, self.direct, strict=False)]

    @property
    def overhead_vs_execution(self) -> list[float]:
        return [a - b for a, b in zip(self.e2e, self.comfy, strict=True)]


async def direct_once(comfy: ComfyUIClient, graph: dict[str, Any], out: Path) -> float:
    started = time.monotonic()
    await comfy.run_prompt(graph, output_dir=out)
    return time.monotonic() - started


async def measure_sequential(
    stack: Stack,
    http: httpx.AsyncClient,
    comfy: ComfyUIClient | None,
    workflow: str,
    jobs: DistinctParams,
    count: int,
    out: Path,
    *,
    breakdown: bool,
) -> SequentialRun:
    """`count` pairs: a direct run then a service run, alternating so both see the same load."""
    run = SequentialRun()
    for n in range(count):
        if comfy is not None and stack.registry is not None:
            graph = stack.registry.render(workflow, jobs.next()).prompt
            run.direct.append(await direct_once(comfy, graph, out / f"direct-{n}"))
        started = datetime.now(UTC)
        posted = time.monotonic()
        task_id = await submit(http, workflow, jobs.next())
        run.post.append(time.monotonic() - posted)
        accepted = datetime.now(UTC)
        close_time, body = await finished(stack, http, task_id)
        run.e2e.append((close_time - started).total_seconds())
        run.comfy.append(float(body["result"]["timings"].get("comfy_execution_seconds") or 0.0))
        if breakdown:
            points = await stage_points(stack, comfy, task_id, started, accepted)
            run.stages.append(stage_seconds(points))
    return run


@dataclass
class Makespan:
    """A backlog run: its makespan and where the time went in ComfyUI."""

    seconds: float
    spans: list[tuple[datetime, datetime]]  # ComfyUI execution_start, success of every prompt
    began: datetime  # when the prompts were handed over (wall clock)
    ended: datetime  # when the last job counted as done

    @property
    def idle_gaps(self) -> list[float]:
        """ComfyUI idle between one prompt's success and the next one's start, in start order."""
        ordered = sorted(self.spans)
        return [
            max(0.0, (nxt[0] - cur[1]).total_seconds()) for cur, nxt in itertools.pairwise(ordered)
        ]

    @property
    def busy(self) -> float:
        return sum((b - a).total_seconds() for a, b in self.spans)

    @property
    def lead(self) -> float:
        return (min(a for a, _ in self.spans) - self.began).total_seconds()

    @property
    def tail(self) -> float:
        return (self.ended - max(b for _, b in self.spans)).total_seconds()


async def execution_spans(
    comfy: ComfyUIClient, prompt_ids: list[str]
) -> list[tuple[datetime, datetime]]:
    spans = []
    for prompt_id in prompt_ids:
        start_ms, success_ms = await comfy_times(comfy, prompt_id)
        start, success = _from_ms(start_ms), _from_ms(success_ms)
        if start is not None and success is not None:
            spans.append((start, success))
    return spans


async def service_makespan(
    stack: Stack,
    http: httpx.AsyncClient,
    comfy: ComfyUIClient | None,
    workflow: str,
    params: list[dict[str, Any]],
) -> Makespan:
    started = datetime.now(UTC)
    task_ids = await asyncio.gather(*(submit(http, workflow, p) for p in params))
    closes = await asyncio.gather(*(finished(stack, http, t) for t in task_ids))
    ended = max(c for c, _ in closes)
    spans: list[tuple[datetime, datetime]] = []
    if comfy is not None:
        prompt_ids = [await executed_prompt_id(stack, t) for t in task_ids]
        spans = await execution_spans(comfy, prompt_ids)
    return Makespan((ended - started).total_seconds(), spans, started, ended)


async def executed_prompt_id(stack: Stack, task_id: str) -> str:
    history = await stack.temporal.get_workflow_handle(task_id).fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            payloads = event.activity_task_completed_event_attributes.result.payloads
            (result,) = await stack.temporal.data_converter.decode(payloads, [ExecuteResult])
            return str(result.comfy_prompt_id)
    raise RuntimeError(f"{task_id}: no completed execute activity")


async def direct_makespan(
    comfy: ComfyUIClient, graphs: list[dict[str, Any]], out: Path
) -> Makespan:
    prompt_ids = [str(uuid.uuid4()) for _ in graphs]
    began = datetime.now(UTC)
    started = time.monotonic()
    await asyncio.gather(
        *(
            comfy.run_prompt(g, output_dir=out / str(i), prompt_id=prompt_ids[i])
            for i, g in enumerate(graphs)
        )
    )
    seconds = time.monotonic() - started
    ended = datetime.now(UTC)
    return Makespan(seconds, await execution_spans(comfy, prompt_ids), began, ended)


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
            comfy: ComfyUIClient | None = None
            if stack.comfyui_url:
                comfy = await exits.enter_async_context(ComfyUIClient(stack.comfyui_url))
            workflow_info = (await http.get(f"/workflows/{args.workflow}")).json()
            jobs = DistinctParams(base_params, set(workflow_info["parameters"]))
            direct_comfy = comfy if stack.registry is not None else None

            # Warm-up: first-run costs (imports, sandbox, connections) are not per-job overhead.
            await measure_sequential(
                stack, http, direct_comfy, args.workflow, jobs, 3, work / "warm", breakdown=False
            )
            seq = await measure_sequential(
                stack, http, direct_comfy, args.workflow, jobs, args.jobs, work / "seq",
                breakdown=args.breakdown,
            )  # fmt: skip

            # Direct first, then the service, each on prompts ComfyUI has not seen.
            direct: Makespan | None = None
            if direct_comfy is not None and stack.registry is not None:
                registry = stack.registry
                graphs = [registry.render(args.workflow, p).prompt for p in jobs.take(args.backlog)]
                direct = await direct_makespan(direct_comfy, graphs, work / "direct")
            through_service = await service_makespan(
                stack, http, comfy, args.workflow, jobs.take(args.backlog)
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


def _gaps_line(label: str, span: Makespan) -> str:
    """Where a backlog's makespan went: handover to the first start (lead), ComfyUI executing
    (busy), ComfyUI idle between prompts, last success to done (tail)."""
    if not span.spans:
        return f"{label}: (no ComfyUI timestamps)"
    gaps = span.idle_gaps
    return (
        f"{label}: lead {span.lead * 1000:5.0f} ms, busy {span.busy:6.2f} s,"
        f" idle max {max(gaps, default=0) * 1000:5.1f} ms / total {sum(gaps) * 1000:6.1f} ms"
        f" over {len(gaps)} gaps, tail {span.tail * 1000:4.0f} ms"
    )


def print_report(
    args: argparse.Namespace,
    params: dict[str, Any],
    seq: SequentialRun,
    through_service: Makespan,
    direct: Makespan | None,
    rate: float,
) -> None:
    target = args.api or ("ComfyUI at " + args.comfyui_url if args.comfyui_url else "emulator")
    print()
    print(f"comfy-temporal overhead benchmark - {target}")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        "load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(f"workflow: {args.workflow} {json.dumps(params)}")
    print()
    print(f"{'measure':<52}{'p50':>10}{'p99':>10}")
    rows: list[tuple[str, list[float]]] = []
    if seq.direct:
        rows.append(("direct end to end (ComfyUIClient.run_prompt), s", seq.direct))
    rows += [
        ("service end to end (POST -> workflow closed), s", seq.e2e),
        ("ComfyUI's own execution, s", seq.comfy),
    ]
    if seq.direct:
        rows.append(("SERVICE OVERHEAD per job (service - direct), s", seq.overhead))
    rows += [
        ("service e2e - ComfyUI execution (older figure), s", seq.overhead_vs_execution),
        ("POST /generate latency, s", seq.post),
    ]
    for label, values in rows:
        print(f"{label:<52}{percentile(values, 50):>10.3f}{percentile(values, 99):>10.3f}")
    print(f"  ({len(seq.e2e)} sequential pairs, direct and service alternating)")
    if seq.stages:
        print()
        print(f"{'stage of a service job (--breakdown)':<52}{'p50 ms':>10}{'p99 ms':>10}")
        for label, _, _ in STAGES:
            values = [s[label] for s in seq.stages if label in s]
            if values:
                p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
                print(f"  {label:<50}{p50:>10.1f}{p99:>10.1f}")
    print()
    print(
        f"backlog of {args.backlog} jobs, makespan through the service: "
        f"{through_service.seconds:8.2f} s"
    )
    if direct is not None:
        print(
            f"backlog of {args.backlog} jobs, makespan straight to ComfyUI: {direct.seconds:8.2f} s"
        )
        ratio = through_service.seconds / direct.seconds
        print(f"ratio service / direct:                         {ratio:8.3f}")
        print(_gaps_line("  direct ", direct))
    else:
        print("(no ComfyUI URL: direct makespan not measured)")
    if through_service.spans:
        print(_gaps_line("  service", through_service))
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
    parser.add_argument(
        "--breakdown", action="store_true",
        help="print the p50 / p99 of every stage of a service job (Temporal history, ComfyUI)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    asyncio.run(run(args))
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: a finished Temporal client can abort the interpreter at exit


if __name__ == "__main__":
    main()
