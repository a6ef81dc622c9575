"""GET /tasks/{id}/events: the Server-Sent Events stream of a job on the real stack."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx
import pytest

from api.cli.tasks import ServerEvent, follow_task
from api.routes import task_events
from tests.support.manifests import EMULATOR_WORKFLOW_ID
from tests.support.sse import Event, read_events, status_of
from tests.support.stack import GenerationStack

Submit = Callable[..., Awaitable[str]]


def _assert_ids_increase(events: list[Event]) -> None:
    positions = [e.position for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), positions


async def test_stream_goes_pending_then_progress_with_rising_progress_then_success(
    http: httpx.AsyncClient, submit: Submit
) -> None:
    # A first job holds the GPU, so the observed one is still PENDING when the stream opens.
    await submit(EMULATOR_WORKFLOW_ID, steps=4, seconds_per_step=0.25)
    task_id = await submit(EMULATOR_WORKFLOW_ID, steps=8, seconds_per_step=0.2)

    async with asyncio.timeout(60):
        events = await read_events(http, task_id)

    _assert_ids_increase(events)
    statuses = [status_of(e) for e in events]
    first_progress = statuses.index("PROGRESS")
    assert statuses[0] == "PENDING"
    assert set(statuses[:first_progress]) == {"PENDING"}
    assert set(statuses[first_progress:-1]) == {"PROGRESS"}, statuses
    assert statuses[-1] == "SUCCESS"
    # A progress event before the sampler's first step names the node but no step yet.
    progress = [e.data["progress"] for e in events if e.event == "progress"]
    steps = [p["step"] for p in progress if p.get("step") is not None]
    assert len(set(steps)) >= 2, steps
    assert steps == sorted(steps)
    final = events[-1]
    assert final.event == "status"
    assert urlsplit(final.data["result"]["download_url"]).path.endswith(".png")
    assert final.data["task_id"] == task_id


async def test_reconnect_with_last_event_id_repeats_nothing_and_reaches_the_end(
    http: httpx.AsyncClient, submit: Submit
) -> None:
    task_id = await submit(EMULATOR_WORKFLOW_ID, steps=10, seconds_per_step=0.2)

    async with asyncio.timeout(60):
        before = await read_events(
            http, task_id, until=lambda events: events[-1].event == "progress"
        )
        after = await read_events(http, task_id, last_event_id=before[-1].id)

    assert after, "the resumed stream sent nothing"
    assert min(e.position for e in after) > before[-1].position
    _assert_ids_increase(before + after)
    assert status_of(after[-1]) == "SUCCESS"
    # Resuming after the final event: nothing more will come (EventSource stops on 204).
    finished = await http.get(f"/tasks/{task_id}/events", headers={"Last-Event-ID": after[-1].id})
    assert finished.status_code == 204


async def test_stream_of_a_finished_task_is_its_final_status_alone(
    http: httpx.AsyncClient, submit: Submit
) -> None:
    task_id = await submit("smoke_image", width=8, height=8)
    async with asyncio.timeout(60):
        while (await http.get(f"/tasks/{task_id}")).json()["status"] != "SUCCESS":
            await asyncio.sleep(0.05)
        events = await read_events(http, task_id)
    assert [(e.event, status_of(e)) for e in events] == [("status", "SUCCESS")]
    assert events[0].data["result"]["outputs"]


async def test_stream_of_an_unknown_task_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/tasks/no-such-task/events")
    assert response.status_code == 404
    assert "no-such-task" in response.json()["detail"][0]["msg"]


async def test_progress_reaches_the_stream_within_2_s_of_comfyui_reporting_it(
    http: httpx.AsyncClient, submit: Submit, stack: GenerationStack
) -> None:
    seconds_per_step = 0.237  # also tells this job's prompt apart in ComfyUI's history
    task_id = await submit(EMULATOR_WORKFLOW_ID, steps=12, seconds_per_step=seconds_per_step)
    async with asyncio.timeout(60):
        events = await read_events(http, task_id)
    assert status_of(events[-1]) == "SUCCESS"

    # When ComfyUI started the prompt (its own execution_start timestamp, §3.5); the sampler
    # reports step k no earlier than k * seconds_per_step after that, so the lag below is an upper
    # bound of the real one.
    async with httpx.AsyncClient(base_url=stack.comfyui_url, trust_env=False) as comfy:
        history = (await comfy.get("/history")).json()
    (entry,) = [
        h
        for h in history.values()
        if h["prompt"][2]["2"]["inputs"].get("seconds_per_step") == seconds_per_step
    ]
    (start_ms,) = [
        data["timestamp"] for kind, data in entry["status"]["messages"] if kind == "execution_start"
    ]
    first_seen: dict[int, float] = {}
    for event in events:
        step = (event.data.get("progress") or {}).get("step")
        if event.event == "progress" and step is not None:
            first_seen.setdefault(step, event.received)
    lags = [seen - (start_ms / 1000 + step * seconds_per_step) for step, seen in first_seen.items()]
    print(
        f"\nSSE progress lag behind ComfyUI over {len(lags)} steps: "
        f"median {statistics.median(lags):.2f} s, max {max(lags):.2f} s"
    )
    assert len(lags) >= 4, first_seen
    assert max(lags) < 2.0, lags


async def test_client_resumes_streams_the_server_ends_early_and_reaches_the_end(
    stack: GenerationStack, submit: Submit, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Streams end after STREAM_SECONDS so the server can stop; make that happen mid-job.
    monkeypatch.setattr(task_events, "STREAM_SECONDS", 0.3)
    task_id = await submit(EMULATOR_WORKFLOW_ID, steps=8, seconds_per_step=0.2)
    seen: list[ServerEvent] = []

    def follow() -> dict:
        with httpx.Client(base_url=stack.url, timeout=30) as client:
            return follow_task(client, task_id, seen.append)

    async with asyncio.timeout(60):
        final = await asyncio.to_thread(follow)

    assert final["status"] == "SUCCESS"
    positions = [tuple(int(p) for p in (e.id or "").split(".")) for e in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), positions
    assert [e.data["status"] for e in seen].count("SUCCESS") == 1
