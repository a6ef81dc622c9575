"""An output store that cannot be written (a full disk, a lost network mount) fails the attempt as
retryable; the retry stores exactly the task's files once the store is writable again."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from activities.io.output_store import LocalOutputStore, OutputPathRefused, OutputStoreError
from temporal_workflows.failures import NON_RETRYABLE_ERROR_TYPES
from tests.support.outputs import assert_stored_once, comfyui_saves, new_prefix, submit_with_prefix
from tests.support.stack import GenerationStack
from tests.support.temporal import pending_execute_state
from tests.support.waiting import wait_for


async def test_a_failed_output_store_write_is_retried_and_stores_the_files_once(
    fault_stack: GenerationStack,
):
    gpu = await fault_stack.start_gpu_worker("gpu-store")
    task_id = f"gen-{uuid.uuid4()}"
    # A regular file where the task's output folder must be created: the move into the store
    # fails for real (file permissions would not stop a root test run).
    outputs_root = fault_stack.data_dir / "outputs"
    outputs_root.mkdir(parents=True, exist_ok=True)
    blocker = outputs_root / task_id
    blocker.write_text("not a folder")

    prefix = new_prefix()
    # About 1 s in ComfyUI: the retry (1 s backoff, then this run) reaches the store well after
    # the first failure is visible and the blocker is gone.
    handle = await submit_with_prefix(
        fault_stack, prefix, task_id=task_id, steps=10, seconds_per_step=0.1
    )

    async def first_attempt_failed() -> tuple[int, str | None, str | None] | None:
        state = await pending_execute_state(handle)
        return state if state[1] is not None else None

    attempt, failure_type, message = await wait_for(
        first_attempt_failed, "the first attempt to fail writing its outputs"
    )
    blocker.unlink()
    assert (attempt, failure_type) == (2, "OutputStoreError")
    assert task_id in (message or "")

    result = await asyncio.wait_for(handle.result(), 30)
    assert (result.attempts, result.infrastructure_retries) == (1, 1)
    assert_stored_once(fault_stack.data_dir, task_id, [o.filename for o in result.outputs])
    # Each attempt ran in ComfyUI (the first one's image was lost with the failed write).
    assert comfyui_saves([gpu.emulator.output_dir], prefix) == 2


async def test_a_name_that_would_leave_the_store_is_refused_for_good_and_a_write_failure_is_not(
    tmp_path: Path,
):
    store = LocalOutputStore(tmp_path)
    with pytest.raises(OutputPathRefused):
        store.path_for("task", "../escape.png")
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "task").write_text("not a folder")
    with pytest.raises(OutputStoreError) as caught:
        await store.commit("task", [])
    assert not isinstance(caught.value, OutputPathRefused)
    assert "OutputPathRefused" in NON_RETRYABLE_ERROR_TYPES
    assert "OutputStoreError" not in NON_RETRYABLE_ERROR_TYPES
