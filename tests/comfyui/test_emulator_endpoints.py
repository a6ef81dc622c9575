"""Emulator HTTP rules the client relies on (comfyui-protocol.md §2): aliases, /view safety,
/api/jobs, queue deletion, and preview frames."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from activities.comfyui.client import ComfyUIClient
from activities.comfyui.errors import ComfyUIError
from activities.comfyui.events import NodeProgress, PreviewFrame
from tests.support.graphs import sampler_graph, save_graph


async def test_routes_exist_plain_and_under_api_but_jobs_only_under_api(shared_emulator) -> None:
    async with httpx.AsyncClient(base_url=shared_emulator.url, trust_env=False) as http:
        assert (await http.get("/queue")).json() == (await http.get("/api/queue")).json()
        assert (await http.get("/prompt")).json() == {"exec_info": {"queue_remaining": 0}}
        assert (await http.get("/api/jobs")).status_code == 200
        assert (await http.get("/jobs")).status_code == 404
        features = (await http.get("/features")).json()
    assert (
        features["supports_preview_metadata"] is True and features["max_upload_size"] == 104857600
    )


async def test_view_refuses_traversal_bad_types_and_missing_files(shared_emulator) -> None:
    (shared_emulator.output_dir / "plain.txt").write_text("x")
    async with httpx.AsyncClient(base_url=shared_emulator.url, trust_env=False) as http:
        statuses = [
            (await http.get("/view", params=params)).status_code
            for params in (
                {},
                {"filename": "plain.txt", "type": "elsewhere"},
                {"filename": "../plain.txt"},
                {"filename": "/etc/passwd"},
                {"filename": "plain.txt", "subfolder": "../../.."},
                {"filename": "absent.png"},
                {"filename": "plain.txt"},
            )
        ]
    assert statuses == [404, 400, 400, 400, 403, 404, 200]


async def test_jobs_report_completed_and_interrupted_prompts(
    start_emulator, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    async with ComfyUIClient(emulator.url) as client:
        done = await client.run_prompt(save_graph(), output_dir=tmp_path, prompt_id="job-done")
        running = asyncio.Event()

        def on_event(event: object) -> None:
            if isinstance(event, NodeProgress):
                running.set()

        task = asyncio.create_task(
            client.run_prompt(
                sampler_graph(2000, 0.005),
                output_dir=tmp_path,
                prompt_id="job-stopped",
                on_event=on_event,
            )
        )
        await running.wait()
        assert (await client.job("job-stopped"))["status"] == "in_progress"
        await client.interrupt("job-stopped")
        await asyncio.gather(task, return_exceptions=True)
        completed = await client.job("job-done")
        stopped = await client.job("job-stopped")
        async with httpx.AsyncClient(base_url=emulator.url, trust_env=False) as http:
            listing = (await http.get("/api/jobs", params={"status": "failed"})).json()
            bad = await http.get("/api/jobs", params={"status": "done"})
    assert completed["status"] == "completed" and completed["outputs_count"] == 1
    assert completed["outputs"]["3"]["images"][0]["filename"] == done.outputs[0].comfy_filename
    assert completed["execution_start_time"] <= completed["execution_end_time"]
    # Interrupted prompts are "failed" with no execution_error (§2.10).
    assert stopped["status"] == "failed" and "execution_error" not in stopped
    assert [job["id"] for job in listing["jobs"]] == ["job-stopped"]
    assert bad.status_code == 400 and "Invalid status value(s): done" in bad.json()["error"]


async def test_queue_delete_removes_only_pending_prompts(start_emulator, tmp_path: Path) -> None:
    emulator = await start_emulator()
    async with ComfyUIClient(emulator.url) as client:
        await client.submit(sampler_graph(2000, 0.005), prompt_id="first")
        await client.submit(save_graph(), prompt_id="second")
        await client.delete_queued(["first", "second"])  # "first" is running: ignored (§2.3)
        queue = await client.queue()
        assert [item[1] for item in queue["queue_running"]] == ["first"]
        assert queue["queue_pending"] == []
        await client.cancel("first")
        assert (await client.history("first"))["status"]["status_str"] == "error"


async def test_prompt_without_client_id_broadcasts_progress_but_no_execution_events(
    shared_emulator,
) -> None:
    async with connect(f"{shared_emulator.url.replace('http', 'ws')}/ws", proxy=None) as ws:
        greeting = json.loads(await ws.recv())
        async with ComfyUIClient(shared_emulator.url) as client:
            await client.submit(sampler_graph(2, 0.0), prompt_id="anonymous")
        types: list[str] = []
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            types.append(message["type"])
            if (
                message["type"] == "status"
                and message["data"]["status"]["exec_info"]["queue_remaining"] == 0
            ):
                break
    assert greeting["type"] == "status" and len(greeting["data"]["sid"]) == 32
    assert "progress" in types and "progress_state" in types
    assert not {"execution_start", "executing", "executed", "execution_success"} & set(types)


async def test_preview_frames_reach_run_prompt_when_a_preview_method_is_set(
    start_emulator, tmp_path: Path
) -> None:
    emulator = await start_emulator(extra_args=["--preview-method", "auto"])
    events: list = []
    async with ComfyUIClient(emulator.url) as client:
        await client.run_prompt(sampler_graph(3, 0.0), output_dir=tmp_path, on_event=events.append)
    frames = [e for e in events if isinstance(e, PreviewFrame)]
    # A legacy client gets type-1 JPEG frames after each progress message (§3.3).
    assert len(frames) == 3
    assert all(
        f.image_type == "image/jpeg" and f.data[:2] == b"\xff\xd8" and f.node_id == "2"
        for f in frames
    )


async def test_preview_metadata_clients_get_type_4_frames(start_emulator) -> None:
    emulator = await start_emulator(extra_args=["--preview-method", "latent2rgb"])
    async with connect(f"{emulator.url.replace('http', 'ws')}/ws?clientId=meta", proxy=None) as ws:
        await ws.recv()
        await ws.send(
            json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        )
        assert json.loads(await ws.recv())["type"] == "feature_flags"
        async with ComfyUIClient(emulator.url) as client:
            await client.submit(sampler_graph(1, 0.0), prompt_id="meta-run", client_id="meta")
        binary = None
        while True:  # read to the done signal so the closing handshake is not queued behind data
            frame = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(frame, bytes):
                binary = binary or frame
            elif json.loads(frame) == {
                "type": "executing",
                "data": {"node": None, "prompt_id": "meta-run"},
            }:
                break
        assert binary is not None
    assert int.from_bytes(binary[:4], "big") == 4
    length = int.from_bytes(binary[4:8], "big")
    metadata = json.loads(binary[8 : 8 + length])
    assert metadata["prompt_id"] == "meta-run" and metadata["image_type"] == "image/jpeg"


async def test_foreign_origin_is_refused_on_a_loopback_host(shared_emulator) -> None:
    async with httpx.AsyncClient(base_url=shared_emulator.url, trust_env=False) as http:
        foreign = await http.get("/queue", headers={"Origin": "http://evil.example"})
        same = await http.get("/queue", headers={"Origin": shared_emulator.url})
        options = await http.options("/prompt")
    assert (foreign.status_code, same.status_code, options.status_code) == (403, 200, 200)


async def test_reusing_a_client_id_silences_the_newer_socket_when_the_older_closes(
    shared_emulator,
) -> None:
    # The duplicate-clientId quirk (§3.1): why the client takes a fresh id per connection.
    ws_url = f"{shared_emulator.url.replace('http', 'ws')}/ws?clientId=twice"
    older = await connect(ws_url, proxy=None)
    await older.recv()
    async with connect(ws_url, proxy=None) as newer:
        await newer.recv()
        await older.close()
        async with connect(
            f"{shared_emulator.url.replace('http', 'ws')}/ws", proxy=None
        ) as witness:
            await witness.recv()
            async with ComfyUIClient(shared_emulator.url) as client:
                await client.submit(save_graph(), prompt_id="quirk-broadcast")
            # Every socket gets the status broadcasts; the witness proves they were sent.
            assert json.loads(await asyncio.wait_for(witness.recv(), 10))["type"] == "status"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(newer.recv(), 0.3)


async def test_download_of_a_missing_file_is_an_error(shared_emulator, tmp_path: Path) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        with pytest.raises(ComfyUIError, match="404"):
            await client.download("absent.png", "", "output", tmp_path / "absent.png")


async def test_preview_method_can_be_chosen_per_prompt_through_extra_data(
    shared_emulator, tmp_path: Path
) -> None:
    events: list = []
    async with ComfyUIClient(shared_emulator.url) as client:
        await client.run_prompt(
            sampler_graph(2, 0.0),
            output_dir=tmp_path,
            on_event=events.append,
            extra_data={"preview_method": "latent2rgb"},
        )
        without: list = []
        await client.run_prompt(sampler_graph(2, 0.0), output_dir=tmp_path, on_event=without.append)
    assert len([e for e in events if isinstance(e, PreviewFrame)]) == 2
    assert [e for e in without if isinstance(e, PreviewFrame)] == []
