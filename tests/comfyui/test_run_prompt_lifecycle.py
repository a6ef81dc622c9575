"""run_prompt under cancellation, interrupts, queueing, dropped sockets, hangs and crashes.
Every fault is real: the emulator process crashes, hangs or closes its sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from activities.comfyui.client import ComfyUIClient
from activities.comfyui.errors import (
    ComfyUIInterrupted,
    ComfyUIStalled,
    ComfyUIUnavailable,
)
from activities.comfyui.events import (
    ComfyEvent,
    ConnectionLost,
    ConnectionRestored,
    NodeProgress,
    PromptQueued,
    PromptStarted,
)
from tests.support.graphs import sampler_graph, save_graph


def when(kind: type, event: asyncio.Event) -> Callable[[ComfyEvent], None]:
    """An on_event callback that sets `event` at the first event of type `kind`."""

    def callback(item: ComfyEvent) -> None:
        if isinstance(item, kind):
            event.set()

    return callback


async def start_long_prompt(
    client: ComfyUIClient, output_dir: Path, prompt_id: str | None = None
) -> asyncio.Task:
    """Runs a 2000-step sampler prompt (about 10 s); returns once its sampler reports progress."""
    running = asyncio.Event()
    task = asyncio.create_task(
        client.run_prompt(
            sampler_graph(2000, 0.005),
            output_dir=output_dir,
            prompt_id=prompt_id,
            on_event=when(NodeProgress, running),
        )
    )
    await running.wait()
    return task


async def cancel_and_wait(task: asyncio.Task) -> None:
    """Cancels `task` and waits until it has ended by re-raising the cancellation."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _ids_in_queue(client: ComfyUIClient) -> set[str]:
    queue = await client.queue()
    return {item[1] for item in queue["queue_running"] + queue["queue_pending"]}


async def test_cancelling_a_queued_prompt_deletes_it_from_the_queue(
    shared_emulator, tmp_path: Path
) -> None:
    emulator = shared_emulator
    async with ComfyUIClient(emulator.url) as client:
        blocker = await start_long_prompt(client, tmp_path / "a", prompt_id="blocker")
        queued = asyncio.Event()
        waiting = asyncio.create_task(
            client.run_prompt(
                save_graph(),
                output_dir=tmp_path / "b",
                prompt_id="waiting",
                on_event=when(PromptQueued, queued),
            )
        )
        await queued.wait()
        assert "waiting" in await _ids_in_queue(client)
        await cancel_and_wait(waiting)
        assert "waiting" not in await _ids_in_queue(client)
        assert await client.history("waiting") is None
        # The running prompt is untouched by the delete (§4.2).
        assert "blocker" in await _ids_in_queue(client) and not blocker.done()
        await cancel_and_wait(blocker)


async def test_queued_event_reports_the_position_behind_the_running_prompt(
    shared_emulator, tmp_path: Path
) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        blocker = await start_long_prompt(client, tmp_path / "a")
        events: list[ComfyEvent] = []
        queued_seen = asyncio.Event()

        def record(event: ComfyEvent) -> None:
            events.append(event)
            if isinstance(event, PromptQueued):
                queued_seen.set()

        follower = asyncio.create_task(
            client.run_prompt(sampler_graph(1, 0.0), output_dir=tmp_path / "b", on_event=record)
        )
        await queued_seen.wait()
        await cancel_and_wait(blocker)
        await follower
    queued = [e for e in events if isinstance(e, PromptQueued)]
    assert len(queued) == 1 and queued[0].queue_position == 1
    assert isinstance(events[0], PromptQueued)


async def test_cancelling_a_running_prompt_interrupts_it_and_waits_for_confirmation(
    shared_emulator, tmp_path: Path
) -> None:
    emulator = shared_emulator
    async with ComfyUIClient(emulator.url) as client:
        task = await start_long_prompt(client, tmp_path, prompt_id="to-cancel")
        began = time.monotonic()
        await cancel_and_wait(task)
        assert time.monotonic() - began < 5.0
        # Confirmed before re-raising: the history entry exists and says interrupted.
        entry = await client.history("to-cancel")
        assert entry is not None and entry["status"]["status_str"] == "error"
        assert [name for name, _ in entry["status"]["messages"]][-1] == "execution_interrupted"
        assert await _ids_in_queue(client) == set()


async def test_interrupt_by_someone_else_raises_comfyui_interrupted(
    shared_emulator, tmp_path: Path
) -> None:
    emulator = shared_emulator
    async with ComfyUIClient(emulator.url) as client, ComfyUIClient(emulator.url) as other:
        task = await start_long_prompt(client, tmp_path)
        await other.interrupt()
        with pytest.raises(ComfyUIInterrupted) as caught:
            await task
    assert caught.value.node_id == "2" and caught.value.class_type == "EmulatorSampler"


async def test_targeted_interrupt_of_a_queued_prompt_leaves_it_queued(
    shared_emulator, tmp_path: Path
) -> None:
    emulator = shared_emulator
    async with ComfyUIClient(emulator.url) as client:
        blocker = await start_long_prompt(client, tmp_path / "a")
        await client.submit(save_graph(), prompt_id="stays-queued")
        await client.interrupt("stays-queued")  # not running: ComfyUI ignores it (§2.4)
        assert "stays-queued" in await _ids_in_queue(client) and not blocker.done()
        await client.cancel("stays-queued")
        assert "stays-queued" not in await _ids_in_queue(client)
        await cancel_and_wait(blocker)


async def test_second_prompt_queued_behind_the_first_starts_without_idle_gap(
    shared_emulator, tmp_path: Path
) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        started = asyncio.Event()
        first = asyncio.create_task(
            client.run_prompt(
                sampler_graph(10, 0.02),
                output_dir=tmp_path / "1",
                on_event=when(PromptStarted, started),
            )
        )
        await started.wait()
        second = asyncio.create_task(
            client.run_prompt(sampler_graph(2, 0.0), output_dir=tmp_path / "2")
        )
        first_result, second_result = await asyncio.gather(first, second)
    assert first_result.finished_ms is not None and second_result.started_ms is not None
    # ComfyUI's own timestamps: #2's execution_start follows #1's execution_success directly.
    gap_ms = second_result.started_ms - first_result.finished_ms
    assert 0 <= gap_ms <= 50


async def test_concurrent_runs_on_one_client_each_get_their_own_outputs(
    shared_emulator, tmp_path: Path
) -> None:
    graphs = [
        save_graph(f"concurrent{index}/run", color=0x010101 * (index + 1)) for index in range(4)
    ]
    async with ComfyUIClient(shared_emulator.url) as client:
        results = await asyncio.gather(
            *(
                client.run_prompt(graph, output_dir=tmp_path / str(index))
                for index, graph in enumerate(graphs)
            )
        )
    assert [r.outputs[0].subfolder for r in results] == [f"concurrent{i}" for i in range(4)]
    assert len({r.prompt_id for r in results}) == 4


async def test_websocket_drop_mid_run_recovers_the_result_from_history(
    start_emulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    await emulator.set_faults(drop_websockets_on_node="EmulatorSampler")
    events: list[ComfyEvent] = []
    async with ComfyUIClient(emulator.url) as client:
        result = await asyncio.wait_for(
            client.run_prompt(
                sampler_graph(5, 0.02, "dropped/run"), output_dir=tmp_path, on_event=events.append
            ),
            timeout=15,
        )
    assert [o.subfolder for o in result.outputs] == ["dropped"] and result.outputs[0].size > 0
    assert result.started_ms is not None and result.finished_ms is not None
    kinds = [type(e) for e in events]
    assert ConnectionLost in kinds and ConnectionRestored in kinds
    assert kinds.index(ConnectionLost) < kinds.index(ConnectionRestored)


async def test_hung_comfyui_raises_stalled_after_stall_timeout(
    start_emulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    await emulator.set_faults(hang_on_node="EmulatorSampler")
    async with ComfyUIClient(emulator.url) as client:
        began = time.monotonic()
        with pytest.raises(ComfyUIStalled) as caught:
            await client.run_prompt(sampler_graph(3, 0.0), output_dir=tmp_path, stall_timeout=0.5)
        elapsed = time.monotonic() - began
    assert 0.5 <= elapsed < 3.0
    assert caught.value.node_id == "2"


async def test_crash_mid_run_raises_unavailable_within_seconds_and_supervisor_restarts(
    start_emulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(restart_backoff=0.2)
    process = emulator.process
    supervisor = asyncio.create_task(process.supervise())
    try:
        await emulator.set_faults(crash_on_node="EmulatorSampler")
        async with ComfyUIClient(emulator.url) as client:
            began = time.monotonic()
            with pytest.raises(ComfyUIUnavailable):
                await client.run_prompt(sampler_graph(3, 0.01), output_dir=tmp_path / "crash")
            assert time.monotonic() - began < 5.0
            await process.wait_healthy(timeout=15.0)
            assert process.restarts == 1
            assert any("crashing on EmulatorSampler" in line for line in process.last_lines)
            # The restarted ComfyUI (without the fault) runs prompts again.
            result = await client.run_prompt(sampler_graph(2, 0.0), output_dir=tmp_path / "after")
            assert len(result.outputs) == 1
    finally:
        await cancel_and_wait(supervisor)


async def test_comfyui_dying_for_good_raises_unavailable_within_seconds(
    start_emulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    await emulator.set_faults(crash_on_node="EmulatorSampler")
    async with ComfyUIClient(emulator.url, unavailable_after=1.0) as client:
        began = time.monotonic()
        with pytest.raises(ComfyUIUnavailable):
            await client.run_prompt(sampler_graph(3, 0.01), output_dir=tmp_path)
        assert time.monotonic() - began < client.unavailable_after + 2.0


async def test_refused_connections_mid_run_raise_unavailable(
    start_emulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    async with ComfyUIClient(emulator.url, unavailable_after=1.0) as client:
        task = await start_long_prompt(client, tmp_path)
        await emulator.set_faults(refuse_connections=True)
        with pytest.raises(ComfyUIUnavailable):
            await asyncio.wait_for(task, client.unavailable_after + 3.0)


async def test_run_prompt_against_nothing_raises_unavailable(tmp_path: Path) -> None:
    from activities.comfyui.process import free_port

    async with ComfyUIClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ComfyUIUnavailable):
            await client.run_prompt(save_graph(), output_dir=tmp_path)


async def test_frozen_comfyui_is_detected_by_websocket_pings(
    start_emulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    await emulator.set_faults(freeze_on_node="EmulatorSampler")
    try:
        async with ComfyUIClient(emulator.url, unavailable_after=0.5) as client:
            client.ping_interval, client.ping_timeout, client.connect_timeout = 0.2, 0.5, 0.5
            began = time.monotonic()
            with pytest.raises(ComfyUIUnavailable):
                await client.run_prompt(sampler_graph(3, 0.0), output_dir=tmp_path)
            assert time.monotonic() - began < 5.0
    finally:
        await emulator.process.stop(grace=0.2)  # a frozen loop ignores SIGINT: SIGKILL follows
