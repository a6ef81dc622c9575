"""GET /tasks/{id}?wait=S, the long poll: it answers the moment the task ends, or with the current
state once S seconds passed; a bad S is a 422."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.manifests import EMULATOR_WORKFLOW_ID, IDLE_POOL_WORKFLOW_ID, idle_pool_registry
from tests.support.stack import GenerationStack, generation_stack, unique
from tests.support.temporal import StartedTasks
from tests.support.waiting import wait_for


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    """A GPU worker on the default pool; IDLE_POOL_WORKFLOW_ID's pool has none."""
    base = tmp_path_factory.mktemp("long-poll")
    registry = idle_pool_registry(base, f"idle-{uuid.uuid4().hex[:8]}")
    async with generation_stack(
        temporal_client, base, registry, gpu_workers=[unique("long-poll-gpu")]
    ) as running:
        yield running


async def _submit(http: httpx.AsyncClient, workflow_id: str, params: dict | None = None) -> str:
    accepted = await http.post(
        "/generate", json={"workflow_id": workflow_id, "params": params or {}}
    )
    assert accepted.status_code == 202, accepted.text
    return accepted.json()["task_id"]


async def test_the_long_poll_answers_when_the_task_ends_not_when_the_wait_expires(
    stack: GenerationStack,
) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=90) as http:
        task_id = await _submit(http, EMULATOR_WORKFLOW_ID, {"steps": 8, "seconds_per_step": 0.1})
        asked = time.monotonic()
        answer = await http.get(f"/tasks/{task_id}", params={"wait": 60})
        answered = time.monotonic()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "SUCCESS", body
    assert body["result"]["outputs"]
    # It ended within the wait, and the answer followed the workflow's close, not the 60 s.
    description = await stack.client.get_workflow_handle(task_id).describe()
    assert description.close_time is not None
    assert answered - asked < 30
    assert time.time() - description.close_time.timestamp() < 5


async def test_the_long_poll_of_an_ended_task_answers_at_once(stack: GenerationStack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=90) as http:
        task_id = await _submit(http, EMULATOR_WORKFLOW_ID, {"steps": 1, "seconds_per_step": 0})
        first = await http.get(f"/tasks/{task_id}", params={"wait": 60})
        assert first.json()["status"] == "SUCCESS", first.text
        asked = time.monotonic()
        again = await http.get(f"/tasks/{task_id}", params={"wait": 60})
        assert time.monotonic() - asked < 5
    assert again.status_code == 200 and again.json() == first.json()


async def test_the_long_poll_answers_the_current_state_when_the_wait_expires(
    stack: GenerationStack, started_tasks: StartedTasks
) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task_id = await _submit(http, IDLE_POOL_WORKFLOW_ID)
        started_tasks.append(task_id)
        asked = time.monotonic()
        answer = await http.get(f"/tasks/{task_id}", params={"wait": 1.5})
        waited = time.monotonic() - asked
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "PENDING", body
    assert body["queue"]["phase"] == "waiting_for_gpu_worker"
    assert 1.5 <= waited < 10


@pytest.mark.parametrize("wait", ["-1", "60.5", "3600", "soon", "nan"])
async def test_a_bad_wait_is_refused_with_a_422(stack: GenerationStack, wait: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task_id = await _submit(http, EMULATOR_WORKFLOW_ID, {"steps": 1, "seconds_per_step": 0})
        answer = await http.get(f"/tasks/{task_id}", params={"wait": wait})
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["query", "wait"]


async def test_the_long_poll_of_a_running_task_waits_for_its_end(stack: GenerationStack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=90) as http:
        task_id = await _submit(http, EMULATOR_WORKFLOW_ID, {"steps": 20, "seconds_per_step": 0.1})

        async def running() -> bool:
            return (await http.get(f"/tasks/{task_id}")).json()["status"] == "PROGRESS"

        await wait_for(running, f"{task_id} to run", 30, interval=0.02)
        answer = await http.get(f"/tasks/{task_id}", params={"wait": 60})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "SUCCESS", answer.text
