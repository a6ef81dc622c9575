"""Runs of a schedule are ordinary generations: rendered at run time, with fresh random seeds,
under the schedule's overlap policy; a run whose params an edited manifest refuses fails alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from tests.support.manifests import EMULATOR_WORKFLOW_ID
from tests.support.schedules import (
    Schedules,
    ScheduleStack,
    wait_for_runs,
    wait_for_schedule,
    wait_for_task,
)


async def _clock_past(moment: str) -> None:
    """Waits until the wall clock is in a later second than `moment`."""
    second = datetime.fromisoformat(moment).replace(microsecond=0)
    async with asyncio.timeout(5):
        while datetime.now(UTC).replace(microsecond=0) <= second:
            await asyncio.sleep(0.05)


async def _start_a_long_run(
    http: httpx.AsyncClient, schedules: Schedules, *, steps: int, overlap: str
) -> tuple[str, list[str]]:
    """Creates a schedule of the emulator sampler (`steps` of 0.05 s) under the `overlap` policy,
    triggers it and waits until its run has started in ComfyUI; returns the schedule id and its
    running task ids."""
    schedule_id = (
        await schedules.create(
            workflow_id=EMULATOR_WORKFLOW_ID,
            params={"steps": steps, "seconds_per_step": 0.05},
            policy={"overlap": overlap},
        )
    )["schedule_id"]
    await http.post(f"/schedules/{schedule_id}/trigger")
    running = await wait_for_schedule(http, schedule_id, lambda b: b["running_task_ids"])
    await wait_for_task(http, running["running_task_ids"][0], frozenset({"PROGRESS"}))
    return schedule_id, running["running_task_ids"]


async def test_skip_policy_drops_a_trigger_while_a_run_is_going(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    # 200 steps of 0.05 s: long enough to still run when the second trigger arrives.
    schedule_id, running = await _start_a_long_run(http, schedules, steps=200, overlap="skip")
    (task_id,) = running

    await http.post(f"/schedules/{schedule_id}/trigger")
    skipped = await wait_for_schedule(http, schedule_id, lambda b: b["num_skipped_overlap"] == 1)

    assert skipped["num_runs"] == 1
    assert [r["task_id"] for r in skipped["recent_runs"]] == [task_id]
    assert skipped["running_task_ids"] == [task_id]
    # Free the GPU for the next test: cancelling interrupts the sampler in ComfyUI.
    await http.post(f"/tasks/{task_id}/cancel")
    assert (await wait_for_task(http, task_id))["status"] == "CANCELLED"


async def test_buffer_one_policy_starts_a_second_trigger_once_the_first_run_ends(
    http: httpx.AsyncClient, schedules: Schedules, temporal_client: Client
) -> None:
    # 60 steps of 0.05 s: long enough to still run when the second trigger arrives.
    schedule_id, _ = await _start_a_long_run(http, schedules, steps=60, overlap="buffer_one")

    await http.post(f"/schedules/{schedule_id}/trigger")
    first, second = await wait_for_runs(http, schedule_id, 2)

    assert first["run_id"] != second["run_id"]
    first_run = await temporal_client.get_workflow_handle(
        first["task_id"], run_id=first["run_id"]
    ).describe()
    second_run = temporal_client.get_workflow_handle(second["task_id"], run_id=second["run_id"])
    await second_run.result()
    assert first_run.status == WorkflowExecutionStatus.COMPLETED
    assert first_run.close_time is not None
    # The second waited for the first instead of running alongside (allow_all) or being dropped.
    assert datetime.fromisoformat(second["started_at"]) >= first_run.close_time


async def test_random_seed_is_drawn_afresh_for_each_run(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    schedule_id = (await schedules.create(workflow_id="seeded_smoke", params={"seed": "random"}))[
        "schedule_id"
    ]

    async def run_once(count: int) -> tuple[int, str]:
        await http.post(f"/schedules/{schedule_id}/trigger")
        runs = await wait_for_runs(http, schedule_id, count)
        task = await wait_for_task(http, runs[-1]["task_id"])
        assert task["status"] == "SUCCESS", task
        return task["result"]["params"]["seed"], runs[-1]["scheduled_at"]

    first_seed, first_time = await run_once(1)
    # Temporal names runs after their time to the second; a trigger in the same second as the
    # first run would reuse its name (docs/schedules.md).
    await _clock_past(first_time)
    second_seed, _ = await run_once(2)
    seeds = [first_seed, second_seed]

    assert all(isinstance(seed, int) for seed in seeds)
    assert seeds[0] != seeds[1]
    assert (await http.get(f"/schedules/{schedule_id}")).json()["params"] == {"seed": "random"}


async def test_run_after_a_manifest_change_that_invalidates_its_params_fails_clearly(
    http: httpx.AsyncClient, schedules: Schedules, probe_manifest: ScheduleStack
) -> None:
    schedule_id = (await schedules.create(workflow_id="schedule_probe", params={"width": 32}))[
        "schedule_id"
    ]

    probe_manifest.set_probe_width_max(16)
    await http.post(f"/schedules/{schedule_id}/trigger")
    (run,) = await wait_for_runs(http, schedule_id, 1)
    task = await wait_for_task(http, run["task_id"])

    assert task["status"] == "FAILURE"
    assert task["error"]["type"] == "InvalidParams"
    assert task["error"]["param"] == "width"
    assert "width" in task["result"]
    after = await wait_for_schedule(
        http, schedule_id, lambda b: b["recent_runs"][0]["status"] == "FAILURE"
    )
    assert after["state"]["paused"] is False  # the schedule goes on
    assert after["next_run_times"]


async def test_pause_on_failure_pauses_the_schedule_after_a_failed_run(
    http: httpx.AsyncClient, schedules: Schedules, probe_manifest: ScheduleStack
) -> None:
    schedule_id = (
        await schedules.create(
            workflow_id="schedule_probe",
            params={"width": 32},
            policy={"pause_on_failure": True},
        )
    )["schedule_id"]

    probe_manifest.set_probe_width_max(16)
    await http.post(f"/schedules/{schedule_id}/trigger")
    (run,) = await wait_for_runs(http, schedule_id, 1)
    assert (await wait_for_task(http, run["task_id"]))["status"] == "FAILURE"

    paused = await wait_for_schedule(http, schedule_id, lambda b: b["state"]["paused"])
    assert paused["state"]["note"]
