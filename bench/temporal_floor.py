"""The raw Temporal floor: what the least job costs on a dev server with the service's flags.

A minimal workflow, one local activity then one activity on another task queue served by a second
Worker with a single slot (as a GPU worker has), both Workers and the client in one process with
the SDK's defaults (temporal-notes.md §6). bench/short_jobs.py runs this file as a child process
on the service's CPUs and drives it over stdin / stdout, one JSON line per command, so it can read
the CPU time of the server and of this process around each phase from /proc.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

CONTROL_QUEUE = "floor-control"
GPU_QUEUE = "floor-gpu"
TIMEOUT = timedelta(seconds=60)


@activity.defn
async def floor_prepare(n: int) -> int:
    return n


@activity.defn
async def floor_execute(n: int) -> int:
    return n


@workflow.defn
class FloorWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        prepared = await workflow.execute_local_activity(
            floor_prepare, n, start_to_close_timeout=TIMEOUT
        )
        return await workflow.execute_activity(
            floor_execute, prepared, task_queue=GPU_QUEUE, start_to_close_timeout=TIMEOUT
        )


# ---------------------------------------------------------------- the child process


async def _one(client: Client, n: int) -> float:
    """One workflow end to end, in seconds: start to result."""
    started = time.monotonic()
    await client.execute_workflow(
        FloorWorkflow.run, n, id=f"floor-{uuid.uuid4()}", task_queue=CONTROL_QUEUE
    )
    return time.monotonic() - started


async def _burst(client: Client, count: int) -> dict[str, float]:
    """`count` workflows started at once: seconds until all are started, until all completed."""
    began = time.monotonic()
    handles = await asyncio.gather(
        *(
            client.start_workflow(
                FloorWorkflow.run, n, id=f"floor-{uuid.uuid4()}", task_queue=CONTROL_QUEUE
            )
            for n in range(count)
        )
    )
    started = time.monotonic() - began
    await asyncio.gather(*(h.result() for h in handles))
    return {"started_s": started, "completed_s": time.monotonic() - began}


async def _serve(address: str, namespace: str) -> None:
    client = await Client.connect(address, namespace=namespace)
    control = Worker(
        client,
        task_queue=CONTROL_QUEUE,
        workflows=[FloorWorkflow],
        activities=[floor_prepare],
    )
    gpu = Worker(
        client, task_queue=GPU_QUEUE, activities=[floor_execute], max_concurrent_activities=1
    )
    async with control, gpu:
        loop = asyncio.get_running_loop()
        _answer({"ready": True})
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            count = int(command.get("count", 1))
            if command["cmd"] == "sequential":
                _answer({"latencies": [await _one(client, n) for n in range(count)]})
            elif command["cmd"] == "burst":
                _answer(await _burst(client, count))
            else:
                _answer({"bye": True})
                return


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def child_main() -> None:
    import argparse
    import os

    parser = argparse.ArgumentParser(description="the raw Temporal floor (driven over stdin)")
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()
    asyncio.run(_serve(args.address, args.namespace))
    sys.stdout.flush()
    os._exit(0)  # sdk-python#300: a finished Temporal runtime can abort the interpreter at exit


# ---------------------------------------------------------------- the parent's side


@dataclass
class FloorProcess:
    """The child process, driven one command at a time."""

    process: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the floor process exited ({await self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def command(self, cmd: str, count: int, timeout: float = 300) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"cmd": cmd, "count": count}) + "\n").encode())
        await self.process.stdin.drain()
        return await self._read(timeout)


@asynccontextmanager
async def floor_process(
    address: str, prefix: list[str], log_path: Path
) -> AsyncIterator[FloorProcess]:
    """Starts the child (under `prefix`, e.g. taskset) with its Workers polling; stops it after."""
    async with AsyncExitStack() as exits:
        log = exits.enter_context(log_path.open("ab"))
        process = await asyncio.create_subprocess_exec(
            *prefix, sys.executable, __file__, "--address", address,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
        floor = FloorProcess(process)
        try:
            await floor._read(timeout=60)
            yield floor
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


if __name__ == "__main__":
    # The workflow must live in an importable module (the sandbox re-imports it), not __main__.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.temporal_floor import child_main

    child_main()
