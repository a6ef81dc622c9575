"""The recorded histories with a webhook (tests/histories/*_with_webhook.json, replayed by
tests/workflows/test_replay.py) really contain the notify step, so the replay guard covers it."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from temporal_workflows.names import NOTIFY_ACTIVITY

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


def _history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())


def _scheduled_activities(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]


@pytest.mark.parametrize("name", ["success_with_webhook", "cancel_with_webhook"])
def test_webhook_history_schedules_notify_last(name: str):
    assert _scheduled_activities(_history(name))[-1] == NOTIFY_ACTIVITY


def test_cancelled_webhook_history_still_closes_cancelled():
    last = _history("cancel_with_webhook").events[-1]
    assert last.HasField("workflow_execution_canceled_event_attributes")


def test_histories_without_a_callback_have_no_notify_step():
    for path in HISTORIES.glob("*.json"):
        if "webhook" not in path.stem:
            assert NOTIFY_ACTIVITY not in _scheduled_activities(_history(path.stem)), path.name
