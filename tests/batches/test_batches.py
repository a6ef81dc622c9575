"""POST /batches end to end on the emulator: every item an ordinary task with its own id,
validation of every item before anything starts, cancel, and a thousand items in one request."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
from temporalio.client import Client

from tests.support.batches import Batches
from tests.support.manifests import EMULATOR_WORKFLOW_ID, IDLE_POOL_WORKFLOW_ID

FAST = {"seconds_per_step": 0.0}
# Long enough to be still running or queued when the batch is cancelled.
SLOW = {"steps": 100, "seconds_per_step": 0.1}


def _finished(body: dict[str, Any]) -> bool:
    return bool(body["finished"])


async def test_a_list_batch_runs_every_item_as_a_task_of_its_own(
    batches: Batches, http: httpx.AsyncClient
) -> None:
    widths = [16, 24, 32]
    accepted = await batches.start(
        {
            "workflow_id": EMULATOR_WORKFLOW_ID,
            "params": {**FAST, "steps": 1},
            "items": [{"width": w} for w in widths],
        }
    )
    batch_id = accepted["batch_id"]
    assert accepted["size"] == 3

    batch = await batches.wait(batch_id, _finished)

    assert batch["state"] == "started"
    assert batch["counts"] == {"PENDING": 0, "SUCCESS": 3, "FAILURE": 0, "CANCELLED": 0}
    assert batch["task_ids"] == [f"{batch_id}-{i}" for i in range(3)]
    for task_id, width in zip(batch["task_ids"], widths, strict=True):
        task = (await http.get(f"/tasks/{task_id}")).json()
        assert task["status"] == "SUCCESS", task
        assert task["result"]["params"]["width"] == width
    listed = (await http.get("/tasks", params={"batch_id": batch_id})).json()
    assert sorted(t["task_id"] for t in listed["tasks"]) == batch["task_ids"]


async def test_a_sweep_runs_every_combination_in_product_order(
    batches: Batches, http: httpx.AsyncClient
) -> None:
    sweep = {"width": [16, 24], "steps": [1, 2]}
    accepted = await batches.start(
        {"workflow_id": EMULATOR_WORKFLOW_ID, "params": FAST, "sweep": sweep}
    )
    batch = await batches.wait(accepted["batch_id"], _finished)

    assert batch["counts"]["SUCCESS"] == 4
    for task_id, (width, steps) in zip(
        batch["task_ids"], itertools.product(*sweep.values()), strict=True
    ):
        task = (await http.get(f"/tasks/{task_id}")).json()
        assert task["status"] == "SUCCESS", task
        assert (task["result"]["params"]["width"], task["result"]["params"]["steps"]) == (
            width,
            steps,
        )


async def _batches_of(client: Client, workflow_id: str) -> int:
    query = f"WorkflowType = 'BatchWorkflow' AND ComfyWorkflow = '{workflow_id}'"
    return (await client.count_workflows(query)).count


async def test_every_bad_item_is_named_in_one_answer_and_nothing_starts(
    http: httpx.AsyncClient, temporal_client: Client
) -> None:
    before = await _batches_of(temporal_client, EMULATOR_WORKFLOW_ID)
    response = await http.post(
        "/batches",
        json={
            "workflow_id": EMULATOR_WORKFLOW_ID,
            "params": {"steps": 1},
            "items": [{"width": 16}, {"width": "wide"}, {"colour": "red"}, {"width": 0}],
        },
    )

    assert response.status_code == 422, response.text
    problems = {tuple(p["loc"]): p for p in response.json()["detail"]}
    assert set(problems) == {
        ("body", "items", 1, "width"),
        ("body", "items", 2, "colour"),
        ("body", "items", 3, "width"),
    }
    assert problems[("body", "items", 2, "colour")]["ctx"] == {"items": [2], "count": 1}
    assert await _batches_of(temporal_client, EMULATOR_WORKFLOW_ID) == before


async def test_a_bad_sweep_value_is_named_with_the_items_it_is_in(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/batches",
        json={
            "workflow_id": EMULATOR_WORKFLOW_ID,
            "sweep": {"width": [16, -1], "steps": [1, 2, 0]},
        },
    )

    assert response.status_code == 422, response.text
    problems = {tuple(p["loc"]): p["ctx"] for p in response.json()["detail"]}
    # Items in product order: (16,1) (16,2) (16,0) (-1,1) (-1,2) (-1,0).
    assert problems == {
        ("body", "sweep", "width", 1): {"items": [3, 4, 5], "count": 3},
        ("body", "sweep", "steps", 2): {"items": [2, 5], "count": 2},
    }


async def test_a_sweep_over_the_size_limit_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/batches",
        json={
            "workflow_id": EMULATOR_WORKFLOW_ID,
            "sweep": {"width": list(range(16, 116)), "steps": list(range(1, 12))},
        },
    )

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "sweep"]
    assert "1100 items" in problem["msg"]


async def test_cancel_stops_unfinished_items_and_leaves_finished_ones(
    batches: Batches, http: httpx.AsyncClient
) -> None:
    accepted = await batches.start(
        {
            "workflow_id": EMULATOR_WORKFLOW_ID,
            # Three slow graphs that differ, so that ComfyUI's cache cannot finish two at once.
            "items": [{"steps": 1, **FAST}, *({**SLOW, "steps": 100 + n} for n in range(3))],
        }
    )
    batch_id = accepted["batch_id"]
    # The GPU takes the items in any order; once one has ended, at least two 10 s items are left.
    await batches.wait(batch_id, lambda b: b["counts"].get("SUCCESS", 0) >= 1)
    task_ids = [f"{batch_id}-{i}" for i in range(4)]
    ended = {
        task_id
        for task_id in task_ids
        if (await http.get(f"/tasks/{task_id}")).json()["status"] == "SUCCESS"
    }

    response = await http.post(f"/batches/{batch_id}/cancel")

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["cancel_requested"] + answer["already_finished"] == 4
    assert answer["cancel_requested"] >= 1
    batch = await batches.wait(batch_id, _finished)
    assert batch["counts"]["CANCELLED"] == answer["cancel_requested"]
    assert batch["counts"]["SUCCESS"] == answer["already_finished"]
    for task_id in ended:  # what had finished keeps its outcome
        assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "SUCCESS"
    again = await http.post(f"/batches/{batch_id}/cancel")
    assert again.status_code == 200, again.text
    assert again.json()["cancel_requested"] == 0


async def test_a_thousand_items_are_accepted_at_once_and_all_started(
    batches: Batches, http: httpx.AsyncClient
) -> None:
    # idle_pool_image runs on a pool no GPU worker polls: every item waits for a GPU.
    accepted = await batches.start(
        {
            "workflow_id": IDLE_POOL_WORKFLOW_ID,
            "items": [{"width": 16 + i % 64} for i in range(1000)],
        }
    )
    batch_id = accepted["batch_id"]

    batch = await batches.wait(
        batch_id, lambda b: b["state"] == "started" and b["started"] == 1000, timeout=180
    )

    assert batch["next_offset"] == 100
    last = await batches.read(batch_id, offset=900, limit=1000)
    assert last["task_ids"][-1] == f"{batch_id}-999" and last["next_offset"] is None
    page = (await http.get("/tasks", params={"batch_id": batch_id, "page_size": 500})).json()
    assert len(page["tasks"]) == 500 and page["next_page_token"]
    # Every item waits for a GPU: all 1,000 are asked to cancel (that each one ends CANCELLED is
    # the small batch's test; the fixture terminates what is left in one server-side operation).
    cancelled = (await http.post(f"/batches/{batch_id}/cancel")).json()
    assert cancelled["cancel_requested"] == 1000, cancelled
