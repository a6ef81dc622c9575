"""Determinism guard: recorded GenerationWorkflow histories replay against the current code.

The histories in tests/histories/ were recorded from real runs (COMFY_RECORD_HISTORIES=1 with
test_generation_e2e.py, test_generation_workflow.py and tests/routing/). A change to
GenerationWorkflow that would break running workflows fails here; protect such changes with
`workflow.patched(...)`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from temporal_workflows.generation import GenerationWorkflow

HISTORIES = sorted((Path(__file__).resolve().parent.parent / "histories").glob("*.json"))


def test_histories_cover_success_failure_cancellation_and_both_retry_budgets():
    names = {path.stem for path in HISTORIES}
    assert {"success", "comfyui_execution_error", "cancel_while_running"} <= names, names
    # Recorded with the two-retry-budgets patch (test_generation_workflow.py); the others without.
    assert {"infrastructure_retries_in_place", "job_retries_spent"} <= names, names
    # Started as POST /generate starts it, with the graph rendered (test_generation_e2e.py).
    assert "success_rendered_at_submit" in names, names
    # Recorded with the model-affinity patch (tests/routing/test_affinity_routing.py).
    assert {"routed_warm", "routed_warm_at_submit", "routed_cold_after_wait"} <= names, names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays_without_nondeterminism(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[GenerationWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"
