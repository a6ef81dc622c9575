"""Schedules through the API on a real Temporal dev server: create, read back, trigger, pause,
change, delete; and the same schedules seen and steered with the `temporal` CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from api.cli.devstack.temporal_server import temporal_cli
from temporal_workflows.names import GENERATION_WORKFLOW, SA_POOL, SA_WORKFLOW
from tests.support.schedules import (
    Schedules,
    ScheduleStack,
    wait_for_runs,
    wait_for_schedule,
    wait_for_task,
)

# Set by Temporal on every run a schedule starts (temporal-notes.md §3e).
SCHEDULED_BY = SearchAttributeKey.for_keyword("TemporalScheduledById")


async def temporal_schedule(stack: ScheduleStack, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs `temporal schedule <args>` against the test server."""
    command = [temporal_cli(), "schedule", *args, "--address", stack.temporal_address]
    completed = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr
    return completed


async def _listed_by_temporal(stack: ScheduleStack, schedule_id: str) -> bool:
    listed = await temporal_schedule(stack, "list", "--output", "json")
    return schedule_id in {s.get("scheduleId") for s in json.loads(listed.stdout or "[]")}


async def test_triggered_run_completes_and_is_listed_as_a_task_of_the_schedule(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    created = await schedules.create(workflow_id="smoke_image", params={"width": 8, "height": 6})
    schedule_id = created["schedule_id"]

    triggered = await http.post(f"/schedules/{schedule_id}/trigger")
    assert triggered.status_code == 202, triggered.text
    (run,) = await wait_for_runs(http, schedule_id, 1)
    task = await wait_for_task(http, run["task_id"])

    assert task["status"] == "SUCCESS", task
    assert task["workflow_id"] == "smoke_image"
    assert task["result"]["params"]["width"] == 8
    assert run["task_id"].startswith(f"{schedule_id}-")
    async with asyncio.timeout(20):  # visibility is eventually consistent
        while True:
            listed = (await http.get("/tasks", params={"schedule_id": schedule_id})).json()
            if listed["tasks"]:
                break
            await asyncio.sleep(0.1)
    assert [t["task_id"] for t in listed["tasks"]] == [run["task_id"]]
    shown = await wait_for_schedule(
        http, schedule_id, lambda b: b["recent_runs"][0]["status"] == "SUCCESS"
    )
    assert shown["num_runs"] == 1


async def test_created_schedule_reads_back_spec_policy_and_state(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    start = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    created = await schedules.create(
        workflow_id="smoke_image",
        params={"width": 8},
        options={"priority": 2},
        spec={
            "cron": ["30 4 * * 1-5"],
            "intervals": [{"every": "1h", "offset": "5m"}],
            "time_zone": "Europe/Berlin",
            "start_at": start.isoformat(),
            "end_at": (start + timedelta(days=30)).isoformat(),
            "jitter": 30,
        },
        policy={"overlap": "buffer_one", "catchup_window": "PT10M", "pause_on_failure": True},
        paused=True,
        note="created paused",
    )

    shown = (await http.get(f"/schedules/{created['schedule_id']}")).json()
    assert shown == created
    assert shown["workflow_id"] == "smoke_image"
    assert shown["params"] == {"width": 8}
    assert shown["options"] == {"worker": None, "priority": 2}
    spec = shown["spec"]
    assert spec["cron"] == ["30 4 * * 1-5"]
    assert spec["intervals"] == [{"every": "1h", "offset": "5m"}]
    assert spec["time_zone"] == "Europe/Berlin"
    assert datetime.fromisoformat(spec["start_at"]) == start
    assert spec["jitter"] == "30s"
    assert shown["policy"] == {
        "overlap": "buffer_one",
        "catchup_window": "10m",
        "pause_on_failure": True,
    }
    assert shown["state"] == {"paused": True, "note": "created paused"}
    assert shown["next_run_times"]
    assert min(datetime.fromisoformat(t) for t in shown["next_run_times"]) >= start


async def test_schedule_made_through_the_api_shows_in_temporal_schedule_list_and_describe(
    http: httpx.AsyncClient, schedules: Schedules, schedule_stack: ScheduleStack
) -> None:
    created = await schedules.create(workflow_id="smoke_image", note="seen by the CLI")
    schedule_id = created["schedule_id"]

    described = await temporal_schedule(stack := schedule_stack, "describe", "-s", schedule_id)
    assert GENERATION_WORKFLOW in described.stdout
    assert "seen by the CLI" in described.stdout
    async with asyncio.timeout(20):
        while not await _listed_by_temporal(stack, schedule_id):
            await asyncio.sleep(0.2)


async def test_pause_and_unpause_through_the_api_keep_their_notes(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image"))["schedule_id"]

    paused = await http.post(f"/schedules/{schedule_id}/pause", json={"note": "GPU maintenance"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == {"paused": True, "note": "GPU maintenance"}
    assert (await http.get(f"/schedules/{schedule_id}")).json()["state"]["paused"] is True

    unpaused = await http.post(f"/schedules/{schedule_id}/unpause", json={"note": "back"})
    assert unpaused.json()["state"] == {"paused": False, "note": "back"}
    assert (await http.get(f"/schedules/{schedule_id}")).json()["state"]["paused"] is False


async def test_pause_with_temporal_schedule_toggle_shows_in_the_api(
    http: httpx.AsyncClient, schedules: Schedules, schedule_stack: ScheduleStack
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image"))["schedule_id"]

    await temporal_schedule(
        schedule_stack, "toggle", "--pause", "--reason", "paused from the CLI", "-s", schedule_id
    )

    shown = (await http.get(f"/schedules/{schedule_id}")).json()
    assert shown["state"] == {"paused": True, "note": "paused from the CLI"}


async def test_trigger_with_temporal_schedule_trigger_shows_a_run_in_the_api(
    http: httpx.AsyncClient, schedules: Schedules, schedule_stack: ScheduleStack
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image", params={"width": 4}))[
        "schedule_id"
    ]

    await temporal_schedule(schedule_stack, "trigger", "-s", schedule_id)

    (run,) = await wait_for_runs(http, schedule_id, 1)
    assert (await wait_for_task(http, run["task_id"]))["status"] == "SUCCESS"


async def test_updated_params_are_used_by_the_next_run(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    schedule_id = (
        await schedules.create(workflow_id="smoke_image", params={"width": 8, "height": 8})
    )["schedule_id"]

    patched = await http.patch(
        f"/schedules/{schedule_id}", json={"params": {"width": 12, "height": 10}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["params"] == {"width": 12, "height": 10}
    await http.post(f"/schedules/{schedule_id}/trigger")
    (run,) = await wait_for_runs(http, schedule_id, 1)
    task = await wait_for_task(http, run["task_id"])

    assert task["status"] == "SUCCESS", task
    assert task["result"]["params"]["width"] == 12
    assert task["result"]["params"]["height"] == 10


async def test_patch_changes_spec_and_policy_and_keeps_a_pause(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image", paused=True))["schedule_id"]

    patched = await http.patch(
        f"/schedules/{schedule_id}",
        json={"spec": {"cron": ["15 2 1 1 *"]}, "policy": {"overlap": "allow_all"}},
    )

    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["spec"]["cron"] == ["15 2 1 1 *"] and body["spec"]["intervals"] == []
    assert body["policy"]["overlap"] == "allow_all"
    assert body["state"]["paused"] is True
    assert body["params"] == {}
    assert all(
        datetime.fromisoformat(t).strftime("%m-%d %H:%M") == "01-01 02:15"
        for t in body["next_run_times"]
    )


async def test_patch_with_invalid_params_is_rejected_and_changes_nothing(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image", params={"width": 8}))[
        "schedule_id"
    ]

    refused = await http.patch(f"/schedules/{schedule_id}", json={"params": {"width": -3}})

    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "params", "width"]
    assert (await http.get(f"/schedules/{schedule_id}")).json()["params"] == {"width": 8}


async def test_delete_removes_the_schedule_from_the_api_and_from_temporal(
    http: httpx.AsyncClient, schedules: Schedules, schedule_stack: ScheduleStack
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image"))["schedule_id"]
    async with asyncio.timeout(20):
        while not await _listed_by_temporal(schedule_stack, schedule_id):
            await asyncio.sleep(0.2)

    deleted = await http.delete(f"/schedules/{schedule_id}")

    assert deleted.status_code == 204
    assert (await http.get(f"/schedules/{schedule_id}")).status_code == 404
    async with asyncio.timeout(20):
        while await _listed_by_temporal(schedule_stack, schedule_id):
            await asyncio.sleep(0.2)


async def test_listing_shows_generation_schedules_with_their_workflow(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image", paused=True))["schedule_id"]

    async def listed() -> dict[str, Any]:
        async with asyncio.timeout(20):
            while True:
                page = (await http.get("/schedules", params={"workflow_id": "smoke_image"})).json()
                for summary in page["schedules"]:
                    if summary["schedule_id"] == schedule_id:
                        return dict(summary)
                await asyncio.sleep(0.1)

    summary = await listed()
    assert summary["workflow_id"] == "smoke_image"
    assert summary["paused"] is True
    other = (await http.get("/schedules", params={"workflow_id": "sd15_txt2img"})).json()
    assert schedule_id not in {s["schedule_id"] for s in other["schedules"]}


async def test_trigger_note_is_recorded_on_the_schedule_and_the_run_succeeds(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image", params={"width": 3}))[
        "schedule_id"
    ]

    triggered = await http.post(
        f"/schedules/{schedule_id}/trigger",
        json={"note": "re-run for the newsletter", "overlap": "allow_all"},
    )

    assert triggered.status_code == 202, triggered.text
    assert triggered.json()["tasks_url"].endswith(f"/tasks?schedule_id={schedule_id}")
    (run,) = await wait_for_runs(http, schedule_id, 1)
    assert (await wait_for_task(http, run["task_id"]))["status"] == "SUCCESS"
    shown = (await http.get(f"/schedules/{schedule_id}")).json()
    assert shown["state"] == {"paused": False, "note": "re-run for the newsletter"}


async def test_runs_carry_the_search_attributes_and_summary_of_a_generation(
    http: httpx.AsyncClient, schedules: Schedules, temporal_client: Client
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image", params={"width": 7}))[
        "schedule_id"
    ]

    await http.post(f"/schedules/{schedule_id}/trigger")
    (run,) = await wait_for_runs(http, schedule_id, 1)
    await wait_for_task(http, run["task_id"])

    described = await temporal_client.get_workflow_handle(run["task_id"]).describe()
    attributes = described.typed_search_attributes
    assert attributes.get(SA_WORKFLOW) == "smoke_image"
    assert attributes.get(SA_POOL) == "default"
    assert attributes.get(SCHEDULED_BY) == schedule_id
    summary = await described.static_summary()
    assert summary is not None and "smoke_image" in summary and schedule_id in summary
    assert (await described.memo())["request"]["params"] == {"width": 7}
