"""Accounting for the fault suite: a filename prefix per task, so ComfyUI's saved files say which
task ran and how often, and the output store holding exactly the files a result names."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

from activities.io.output_store import LocalOutputStore
from tests.support.stack import GenerationStack


def new_prefix() -> str:
    """A filename prefix unique to one task: ComfyUI's saved files then say which task ran."""
    return f"t{uuid.uuid4().hex[:12]}"


async def submit_with_prefix(
    stack: GenerationStack, prefix: str, *, task_id: str | None = None, **params: Any
) -> WorkflowHandle[Any, Any]:
    return await stack.submit({"filename_prefix": prefix, **params}, task_id=task_id)


def comfyui_saves(output_dirs: list[Path], prefix: str) -> int:
    """How many times ComfyUI's SaveImage ran for the task with this prefix (files it wrote)."""
    return sum(len(list(d.glob(f"{prefix}_*"))) for d in output_dirs if d.is_dir())


def assert_stored_once(data_dir: Path, task_id: str, filenames: list[str]) -> None:
    """The task's output folder holds exactly the files its result names, nothing else."""
    stored = [p.name for p in LocalOutputStore(data_dir).files(task_id)]
    assert stored == sorted(filenames), (task_id, stored, filenames)
