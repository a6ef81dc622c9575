"""What tests read from Temporal (the execute activity's heartbeat and last failure, a run's
history kept for the replay test), tasks they clean up, and a dev server they can restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from api.cli.devstack.temporal_server import DevServerConfig, TemporalDevServer, temporal_cli
from temporal_workflows.payloads import Progress

HISTORIES_DIR = Path(__file__).resolve().parent.parent / "histories"


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """With COMFY_RECORD_HISTORIES=1, save this run's history as tests/histories/<name>.json for
    the replay test (tests/workflows/test_replay.py); otherwise do nothing."""
    if os.environ.get("COMFY_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES_DIR.mkdir(exist_ok=True)
    (HISTORIES_DIR / f"{name}.json").write_text(history.to_json())


async def pending_progress(handle: WorkflowHandle) -> Progress | None:
    """The execute activity's latest heartbeat, as the API reads it; None before the first."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.HasField("heartbeat_details"):
            (progress,) = await handle._client.data_converter.decode(
                pending.heartbeat_details.payloads, [Progress]
            )
            return progress
    return None


async def pending_execute_state(handle: WorkflowHandle) -> tuple[int, str | None, str | None]:
    """The execute activity as `temporal workflow describe` shows it: (attempt, type of the last
    attempt's failure, its message); (0, None, None) when no activity is pending."""
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        if pending.HasField("last_failure"):
            failure = pending.last_failure
            return (
                pending.attempt,
                failure.application_failure_info.type or None,
                failure.message,
            )
        return pending.attempt, None, None
    return 0, None, None


class StartedTasks(list[str]):
    """Task ids a test started; whatever still runs at the end is terminated."""


async def terminate_running(client: Client, task_ids: list[str]) -> None:
    """Terminates the tasks that still run; one may finish between the check and the call."""
    for task_id in task_ids:
        handle = client.get_workflow_handle(task_id)
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            continue
        with contextlib.suppress(RPCError):  # "workflow execution already completed"
            await handle.terminate(reason="test finished")


class RestartableDevServer:
    """A Temporal dev server persisted to a SQLite file that a test can stop and start again on the
    same file and port (api/cli/devstack/temporal_server.py: the server `comfy-temporal dev`
    runs)."""

    def __init__(self, config: DevServerConfig) -> None:
        self.config = config
        self.server = TemporalDevServer(config)
        self.restarts = 0

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> None:
        await self.server.start()

    async def restart(self) -> None:
        """SIGTERM, wait for the exit, then a new server process over the same database."""
        await self.server.stop()
        self.server = TemporalDevServer(self.config)
        await self.server.start()
        self.restarts += 1

    async def stop(self) -> None:
        await self.server.stop()


async def batch_cancel(client: Client, address: str, query: str, reason: str) -> None:
    """`temporal workflow cancel --query <query> --reason <reason> --yes`, the binary README names,
    once visibility lists exactly one running execution for `query`."""
    async with asyncio.timeout(30):  # visibility learns search attributes a moment after a start
        while (await client.count_workflows(query)).count != 1:
            await asyncio.sleep(0.05)
    cli = await asyncio.create_subprocess_exec(
        temporal_cli(),
        "workflow",
        "cancel",
        "--address",
        address,
        "--query",
        query,
        "--reason",
        reason,
        "--yes",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), timeout=60)
    assert cli.returncode == 0, (out + err).decode()
