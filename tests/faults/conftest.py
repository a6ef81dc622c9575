"""Fixtures of the fault suite: a private pool whose workflow has a short stall limit, GPU workers
driving ComfyUI emulator processes, Temporal dev servers of the tests' own (for restarts), and the
accounting every fault test ends with: each task succeeded once, with exactly its files."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from activities.io.output_store import LocalOutputStore
from api.cli.devstack.http_server import free_port
from api.cli.devstack.temporal_server import DevServerConfig, TemporalDevServer
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.payloads import GenerationRequest
from tests.fixtures_emulator import StartEmulator
from tests.workflows.conftest import (
    WORKFLOWS_YAML,
    GenerationStack,
    stack_with_control_worker,
    valid_registry,
    write_sampled_image_manifests,
)

# The sampled_image workflow of tests/workflows, with a stall limit of its own: ComfyUI silent for
# 1.5 s while running the prompt means a hung node.
STALL_TIMEOUT = 1.5
FAULT_WORKFLOWS_YAML = WORKFLOWS_YAML + "  stall_timeout: {stall_timeout}\n"


def write_fault_manifests(base_dir: Path, pool: str) -> tuple[Path, Path]:
    return write_sampled_image_manifests(
        base_dir, FAULT_WORKFLOWS_YAML.format(pool=pool, stall_timeout=STALL_TIMEOUT)
    )


def new_prefix() -> str:
    """A filename prefix unique to one task: ComfyUI's saved files then say which task ran."""
    return f"t{uuid.uuid4().hex[:12]}"


async def submit(
    stack: GenerationStack, prefix: str, *, task_id: str | None = None, **params: Any
) -> WorkflowHandle:
    request = GenerationRequest(
        workflow_id="sampled_image", params={"filename_prefix": prefix, **params}
    )
    return await stack.client.start_workflow(
        GenerationWorkflow.run,
        request,
        id=task_id or f"gen-{uuid.uuid4()}",
        task_queue=stack.control_queue,
    )


def comfyui_saves(output_dirs: list[Path], prefix: str) -> int:
    """How many times ComfyUI's SaveImage ran for the task with this prefix (files it wrote)."""
    return sum(len(list(d.glob(f"{prefix}_*"))) for d in output_dirs if d.is_dir())


def assert_stored_once(data_dir: Path, task_id: str, filenames: list[str]) -> None:
    """The task's output folder holds exactly the files its result names, nothing else."""
    stored = [p.name for p in LocalOutputStore(data_dir).files(task_id)]
    assert stored == sorted(filenames), (task_id, stored, filenames)


@pytest.fixture
async def fault_stack(
    temporal_client: Client, temporal_address: str, start_emulator: StartEmulator, tmp_path: Path
) -> AsyncIterator[GenerationStack]:
    """A control worker on its own queue for the stall-limited workflow; GPU workers on demand
    (`await stack.start_gpu_worker(name)`), all stopped after the test."""
    pool = f"faults-{uuid.uuid4().hex[:10]}"
    registry = valid_registry(*write_fault_manifests(tmp_path, pool))
    async with stack_with_control_worker(
        temporal_client, temporal_address, start_emulator, tmp_path, pool, registry
    ) as stack:
        yield stack


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


@pytest_asyncio.fixture
async def own_dev_server(tmp_path: Path) -> AsyncIterator[RestartableDevServer]:
    """A dev server of this test alone (the session's server is never stopped)."""
    server = RestartableDevServer(
        DevServerConfig(
            db_file=tmp_path / "temporal" / "temporal.db",
            port=free_port(),
            ui_port=None,
            log_file=tmp_path / "temporal" / "server.log",
        )
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


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
