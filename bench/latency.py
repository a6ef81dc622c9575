"""How fast a cancel reaches ComfyUI and how fresh a job's progress is, against two targets:
"a cancel reaches ComfyUI within 1 s" and "progress visible within 2 s".

It starts the same stack as bench/overhead.py (imported from there: a Temporal dev server,
`comfy-temporal api --with-control-worker`, one `gpu-worker` attached to the ComfyUI emulator)
and runs N rounds. Each round posts two long `emulator_sampler` jobs (default 40 steps x 0.1 s):
A starts in ComfyUI, B is prefetched by the GPU worker into ComfyUI's queue behind it.

- Queued cancel: B is cancelled while it waits in ComfyUI's queue; measured from just before
  `POST /tasks/{B}/cancel` (client clock) to the first tight poll of ComfyUI's `/queue` that no
  longer lists its prompt, and to B's workflow close (CANCELED) in Temporal.
- Progress lag: while A runs, GET /tasks/{A} is polled every --poll-ms and the SSE stream
  GET /tasks/{A}/events is read; for every step seen first, its arrival minus the time ComfyUI
  reported it. ComfyUI's history has no per-step timestamps, so that time is its own
  `execution_start` + step x seconds_per_step (comfyui-protocol.md §3.5): the sampler reports a
  step only after sleeping it, so the lag is an upper bound.
- Running cancel: once GET /tasks/{A} shows PROGRESS at step >= --cancel-at-step, A is cancelled;
  measured from just before the POST to ComfyUI's `execution_interrupted` timestamp for A's prompt
  (its history) and to A's workflow close (CANCELED). The emulator checks for an interrupt once
  per sampler step, like a real sampler, so up to one step (0.1 s) of it is the sampler's.

Everything runs on one host, so the client's, ComfyUI's and Temporal's clocks agree.

Usage: python bench/latency.py [--jobs 10] [--steps 40] [--seconds-per-step 0.1]
       [--cancel-at-step 20] [--poll-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError  # noqa: E402

from bench.overhead import (  # noqa: E402
    JOB_TIMEOUT,
    DistinctParams,
    Stack,
    finished,
    own_stack,
    percentile,
    submit,
)
from tests.support.manifests import EMULATOR_WORKFLOW_ID  # noqa: E402
from tests.support.sse import read_events  # noqa: E402

# The job's parameters that tell its prompt apart in ComfyUI's queue and history.
IDENTIFYING = {"width", "height"}


@dataclass
class Figures:
    """All measurements of a run, in seconds."""

    queued_cancel_gone: list[float] = field(default_factory=list)  # cancel -> gone from /queue
    queued_cancel_closed: list[float] = field(default_factory=list)  # cancel -> workflow closed
    running_cancel_interrupted: list[float] = field(default_factory=list)  # -> interrupted
    running_cancel_closed: list[float] = field(default_factory=list)  # cancel -> workflow closed
    poll_lag: list[float] = field(default_factory=list)  # GET /tasks: step visible - reported
    sse_lag: list[float] = field(default_factory=list)  # SSE: step received - reported


def _matches(prompt: dict[str, Any], params: dict[str, Any]) -> bool:
    """Whether a ComfyUI prompt (API-format graph) is the one rendered from `params`."""
    inputs = prompt.get("1", {}).get("inputs", {})
    return bool(inputs.get("width") == params["width"] and inputs.get("height") == params["height"])


async def queued_prompt_present(comfy: httpx.AsyncClient, params: dict[str, Any]) -> bool:
    """Whether ComfyUI's /queue lists the job's prompt as pending ([number, id, prompt, ...])."""
    queue = (await comfy.get("/queue")).json()
    return any(_matches(item[2], params) for item in queue["queue_pending"])


async def history_entry(comfy: httpx.AsyncClient, params: dict[str, Any]) -> dict[str, Any] | None:
    history = (await comfy.get("/history")).json()
    for entry in history.values():
        if _matches(entry["prompt"][2], params):
            return dict(entry)
    return None


def message_ms(entry: dict[str, Any], kind: str) -> int | None:
    """A status message's timestamp (ms) in a ComfyUI history entry (comfyui-protocol.md §3.5)."""
    for name, data in entry["status"]["messages"]:
        if name == kind:
            return int(data["timestamp"])
    return None


async def cancel(http: httpx.AsyncClient, task_id: str) -> float:
    """Posts the cancel; returns the client's wall-clock time just before sending it."""
    sent = time.time()
    response = await http.post(f"/tasks/{task_id}/cancel", params={"reason": "latency benchmark"})
    if response.status_code >= 300:
        raise RuntimeError(f"cancel of {task_id} answered {response.status_code}: {response.text}")
    return sent


async def closed_cancelled(stack: Stack, task_id: str) -> float:
    """Waits for the workflow to close; returns its close time (epoch seconds) if CANCELED."""
    handle = stack.temporal.get_workflow_handle(task_id)
    try:
        async with asyncio.timeout(JOB_TIMEOUT):
            await handle.result()
    except WorkflowFailureError:
        pass  # a cancelled workflow's result raises; its status below says how it ended
    description = await handle.describe()
    if description.status != WorkflowExecutionStatus.CANCELED or description.close_time is None:
        raise RuntimeError(f"task {task_id} closed {description.status}, not CANCELED")
    return description.close_time.timestamp()


class ProgressWatch:
    """First arrival (epoch seconds) of every step of one job: by polling GET /tasks and on SSE."""

    def __init__(self, http: httpx.AsyncClient, task_id: str, poll_seconds: float) -> None:
        self.http = http
        self.task_id = task_id
        self.poll_seconds = poll_seconds
        self.polled: dict[int, float] = {}
        self.streamed: dict[int, float] = {}
        self.latest_step = 0
        self.status = "PENDING"
        self.step_reached = asyncio.Event()
        self.wanted_step = 0

    async def poll(self) -> None:
        while self.status in ("PENDING", "PROGRESS"):
            body = (await self.http.get(f"/tasks/{self.task_id}")).json()
            seen = time.time()
            self.status = body["status"]
            step = (body.get("progress") or {}).get("step")
            if self.status == "PROGRESS" and step is not None:
                self.polled.setdefault(step, seen)
                self.latest_step = max(self.latest_step, step)
                if self.latest_step >= self.wanted_step:
                    self.step_reached.set()
            await asyncio.sleep(self.poll_seconds)

    async def stream(self) -> None:
        events = await read_events(self.http, self.task_id)
        for event in events:
            step = (event.data.get("progress") or {}).get("step")
            if event.event == "progress" and step is not None:
                self.streamed.setdefault(step, event.received)


async def roles_in_comfyui(
    comfy: httpx.AsyncClient, params: list[dict[str, Any]]
) -> tuple[int, int] | None:
    """(index of the running job, index of the queued one) once ComfyUI runs one of the two
    prompts and has the other pending; None before that."""
    queue = (await comfy.get("/queue")).json()
    running = [i for i, p in enumerate(params) for item in queue["queue_running"]
               if _matches(item[2], p)]  # fmt: skip
    pending = [i for i, p in enumerate(params) for item in queue["queue_pending"]
               if _matches(item[2], p)]  # fmt: skip
    if len(running) == 1 and len(pending) == 1:
        return running[0], pending[0]
    return None


async def one_round(
    stack: Stack,
    http: httpx.AsyncClient,
    comfy: httpx.AsyncClient,
    jobs: DistinctParams,
    args: argparse.Namespace,
    figures: Figures,
) -> None:
    base = {"steps": args.steps, "seconds_per_step": args.seconds_per_step}
    params = [{**base, **jobs.next()} for _ in range(2)]
    # Both jobs are watched from their POST on: the GPU worker may start either one first (the
    # control worker schedules their activities concurrently), and a watch started late would
    # count steps that were already visible as just seen.
    task_ids: list[str] = []
    watches: list[ProgressWatch] = []
    watchers: list[asyncio.Task[None]] = []
    for job in params:
        task_ids.append(await submit(http, EMULATOR_WORKFLOW_ID, job))
        watch = ProgressWatch(http, task_ids[-1], args.poll_ms / 1000)
        watch.wanted_step = args.cancel_at_step
        watches.append(watch)
        watchers += [asyncio.create_task(watch.poll()), asyncio.create_task(watch.stream())]

    roles: tuple[int, int] | None = None
    deadline = time.monotonic() + 30
    while roles is None:
        if time.monotonic() > deadline:
            queue = (await comfy.get("/queue")).json()
            raise RuntimeError(f"{task_ids}: not one running and one queued in ComfyUI: {queue}")
        roles = await roles_in_comfyui(comfy, params)
        await asyncio.sleep(0.02)
    running, queued = roles
    running_id, queued_id = task_ids[running], task_ids[queued]
    running_params, watch = params[running], watches[running]

    # The queued job: prefetched into ComfyUI's queue behind the running one, then cancelled.
    sent = await cancel(http, queued_id)
    while await queued_prompt_present(comfy, params[queued]):
        await asyncio.sleep(0.002)
    figures.queued_cancel_gone.append(time.time() - sent)
    figures.queued_cancel_closed.append(await closed_cancelled(stack, queued_id) - sent)

    # The running job: progress watched until the chosen step, then cancelled.
    async with asyncio.timeout(60):
        await watch.step_reached.wait()
    sent = await cancel(http, running_id)
    figures.running_cancel_closed.append(await closed_cancelled(stack, running_id) - sent)
    async with asyncio.timeout(60):
        await asyncio.gather(*watchers)
    entry = await history_entry(comfy, running_params)
    if entry is None:
        raise RuntimeError(f"task {running_id}: its prompt is not in ComfyUI's history")
    interrupted_ms = message_ms(entry, "execution_interrupted")
    start_ms = message_ms(entry, "execution_start")
    if interrupted_ms is None or start_ms is None:
        raise RuntimeError(f"task {running_id}: no execution_start / execution_interrupted")
    figures.running_cancel_interrupted.append(interrupted_ms / 1000 - sent)
    for seen_at, lags in ((watch.polled, figures.poll_lag), (watch.streamed, figures.sse_lag)):
        for step, seen in seen_at.items():
            lags.append(seen - (start_ms / 1000 + step * args.seconds_per_step))


async def run(args: argparse.Namespace) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="comfy-bench-latency-") as tmp:
        stack_args = argparse.Namespace(comfyui_url=None)
        async with own_stack(stack_args, Path(tmp)) as stack:
            assert stack.comfyui_url is not None
            async with (
                httpx.AsyncClient(base_url=stack.api_url, timeout=60) as http,
                httpx.AsyncClient(base_url=stack.comfyui_url, timeout=60, trust_env=False) as comfy,
            ):
                jobs = DistinctParams({}, IDENTIFYING)
                # Warm-up: first-run costs (imports, sandbox, connections) are not latency.
                warm = {"steps": 2, "seconds_per_step": 0.01, **jobs.next()}
                await finished(stack, http, await submit(http, EMULATOR_WORKFLOW_ID, warm))
                for _ in range(args.jobs):
                    await one_round(stack, http, comfy, jobs, args, figures)
    return figures


def print_report(args: argparse.Namespace, figures: Figures) -> None:
    print()
    print("comfy-temporal cancel and progress latency - emulator")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        "load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    print(
        f"workflow: {EMULATOR_WORKFLOW_ID}, {args.steps} steps x {args.seconds_per_step} s;"
        f" {args.jobs} rounds; running job cancelled at step >= {args.cancel_at_step};"
        f" GET /tasks polled every {args.poll_ms} ms"
    )
    print()
    print(f"{'measure (s)':<60}{'n':>5}{'p50':>8}{'p90':>8}{'max':>8}")
    rows = (
        ("cancel RUNNING -> ComfyUI execution_interrupted", figures.running_cancel_interrupted),
        ("cancel RUNNING -> workflow closed (CANCELED)", figures.running_cancel_closed),
        ("cancel QUEUED in ComfyUI -> gone from ComfyUI /queue", figures.queued_cancel_gone),
        ("cancel QUEUED in ComfyUI -> workflow closed (CANCELED)", figures.queued_cancel_closed),
        ("progress lag, GET /tasks poll (upper bound)", figures.poll_lag),
        ("progress lag, SSE /tasks/{id}/events (upper bound)", figures.sse_lag),
    )
    for label, values in rows:
        print(
            f"{label:<60}{len(values):>5}{percentile(values, 50):>8.3f}"
            f"{percentile(values, 90):>8.3f}{max(values, default=float('nan')):>8.3f}"
        )
    print()
    print("targets: a cancel reaches ComfyUI within 1 s; progress visible within 2 s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10, help="rounds (a running + a queued job)")
    parser.add_argument("--steps", type=int, default=40, help="sampler steps of each job")
    parser.add_argument("--seconds-per-step", type=float, default=0.1)
    parser.add_argument(
        "--cancel-at-step", type=int, default=20,
        help="cancel the running job once GET /tasks shows this step (at least 3)",
    )  # fmt: skip
    parser.add_argument("--poll-ms", type=float, default=20, help="GET /tasks poll interval")
    args = parser.parse_args(argv)
    if not 3 <= args.cancel_at_step < args.steps:
        parser.error("--cancel-at-step: must be at least 3 and below --steps")
    if args.jobs < 1:
        parser.error("--jobs: must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    figures = asyncio.run(run(args))
    print_report(args, figures)
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: a finished Temporal client can abort the interpreter at exit


if __name__ == "__main__":
    main()
