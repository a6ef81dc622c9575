"""Trace replay: the request sequences recorded from real ComfyUI 0.8.0 (traces/, copied from the
protocol reference) are replayed against a fresh emulator, and every socket's message sequence is
compared with the recording: types, order and field names, not ids or timestamps."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

TRACES = Path(__file__).resolve().parent / "traces"


def _transcripts() -> list[dict]:
    return [
        json.loads(line) for line in (TRACES / "transcripts.jsonl").read_text().splitlines() if line
    ]


def summarise_binary(frame: bytes) -> dict:
    """The form the recordings use for binary frames (comfyui-protocol.md §3.3)."""
    (event,) = struct.unpack_from(">I", frame, 0)
    if event == 1:
        (image_format,) = struct.unpack_from(">I", frame, 4)
        return {"binary_event": 1, "image_format": image_format, "image_magic": frame[8:12].hex()}
    if event == 3:
        (length,) = struct.unpack_from(">I", frame, 4)
        return {
            "binary_event": 3,
            "node_id": frame[8 : 8 + length].decode(),
            "text": frame[8 + length :].decode(),
        }
    if event == 4:
        (length,) = struct.unpack_from(">I", frame, 4)
        return {
            "binary_event": 4,
            "metadata": json.loads(frame[8 : 8 + length]),
            "image_magic": frame[8 + length : 12 + length].hex(),
        }
    return {"binary_event": event}


def shape(message: dict) -> tuple:
    """What must match between real ComfyUI and the emulator: the message type, its field
    names, and structural values (node ids, states, queue sizes), never ids or timestamps."""
    if "binary_event" in message:
        event = message["binary_event"]
        if event == 1:
            return ("binary", 1, message["image_format"], message["image_magic"])
        if event == 3:
            return ("binary", 3, message["node_id"], message["text"])
        return (
            "binary",
            event,
            tuple(sorted(message["metadata"])),
            message["metadata"]["image_type"],
        )
    kind, data = message["type"], message["data"]
    detail: Any = ()
    if kind == "status":
        detail = (data["status"]["exec_info"]["queue_remaining"], "sid" in data)
    elif kind == "progress_state":
        detail = tuple(
            (node_id, entry["state"], tuple(sorted(entry)))
            for node_id, entry in sorted(data["nodes"].items())
        )
    elif kind == "executing":
        detail = data["node"]
    elif kind == "execution_cached":
        detail = tuple(data["nodes"])
    elif kind == "executed":
        detail = (data["node"], tuple(sorted(data["output"] or {})))
    elif kind in ("execution_error", "execution_interrupted"):
        detail = (data["node_id"], data["node_type"], tuple(data["executed"]))
    elif kind == "progress":
        detail = (data["node"], data["value"], data["max"])
    elif kind == "feature_flags":
        detail = tuple(sorted(data))
    return (kind, tuple(sorted(data)), detail)


class RecordingSocket:
    """A WebSocket client that records every frame it receives, summarised like the traces."""

    def __init__(self, url: str, client_id: str, *, preview_metadata: bool = False) -> None:
        self.url = url
        self.client_id = client_id
        self.preview_metadata = preview_metadata
        self.messages: list[dict] = []
        self.window_start = 0
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task | None = None
        self.arrived = asyncio.Event()

    async def open(self) -> None:
        self.ws = await connect(
            f"{self.url.replace('http', 'ws')}/ws?clientId={self.client_id}", proxy=None
        )
        if self.preview_metadata:
            await self.ws.send(
                json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            self.messages.append(
                summarise_binary(frame) if isinstance(frame, bytes) else json.loads(frame)
            )
            self.arrived.set()

    async def window(self, count: int, timeout: float = 15.0) -> list[dict]:
        """The next `count` messages after the previous window (waits for them)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < self.window_start + count:
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                break
        window = self.messages[self.window_start : self.window_start + count]
        self.window_start += len(window)
        return window

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


def interrupt_graph() -> dict:
    """The recorded interrupt scenario's shape: EmptyImage -> three slow ImageBlur -> output
    (its graph was not stored; node ids are the recorded ones)."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 1536, "height": 1536, "batch_size": 1, "color": 99},
        },
        "10": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0},
        },
        "11": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["10", 0], "blur_radius": 31, "sigma": 10.0},
        },
        "12": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["11", 0], "blur_radius": 31, "sigma": 10.0},
        },
        "20": {
            "class_type": "SaveImage",
            "inputs": {"images": ["12", 0], "filename_prefix": "blurred"},
        },
    }


async def _wait_history(
    http: httpx.AsyncClient, url: str, prompt_id: str, timeout: float = 15.0
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await http.get(f"{url}/history/{prompt_id}")).json()
        if prompt_id in body:
            return body[prompt_id]
        await asyncio.sleep(0.02)  # poll with a deadline
    raise AssertionError(f"{prompt_id} never reached history")


async def _interrupt_when_node_runs(
    socket: RecordingSocket, http: httpx.AsyncClient, url: str, prompt_id: str, node: str
) -> None:
    seen = 0
    while True:
        for message in socket.messages[seen:]:
            if message.get("type") == "executing" and message["data"].get("node") == node:
                await http.post(f"{url}/interrupt", json={"prompt_id": prompt_id})
                return
        seen = len(socket.messages)
        socket.arrived.clear()
        await socket.arrived.wait()


# Model loads on (a cost per GB and a loaded-model limit) change no message.
LOAD_COSTS = ["--emulator-load-seconds-per-gb", "0.5", "--emulator-max-loaded-models", "1"]


@pytest.mark.parametrize("extra_args", [[], LOAD_COSTS], ids=["default", "model-loads"])
async def test_replayed_transcripts_produce_the_recorded_message_sequences(
    start_emulator, extra_args: list[str]
) -> None:
    emulator = await start_emulator(extra_args=extra_args)
    url = emulator.url
    sockets = {
        "observer": RecordingSocket(url, "observer"),
        "client-A": RecordingSocket(url, "client-A"),
    }
    for socket in sockets.values():
        await socket.open()
    mismatches: list[str] = []
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=15.0) as http:
            for scenario in _transcripts():
                name = scenario["scenario"]
                if name == "binary_previews_client-A":
                    # client-C negotiated preview metadata before this run (its recording shows it).
                    sockets["client-C"] = RecordingSocket(url, "client-C", preview_metadata=True)
                    await sockets["client-C"].open()
                post = scenario["http"][0]
                prompt_id = (
                    post["resp"].get("prompt_id") if isinstance(post.get("resp"), dict) else None
                )
                body = post.get("body")
                if name == "interrupt":
                    body = {
                        "prompt": interrupt_graph(),
                        "client_id": "client-A",
                        "prompt_id": prompt_id,
                    }
                if body is not None:
                    interrupter = None
                    if name == "interrupt":
                        interrupter = asyncio.create_task(
                            _interrupt_when_node_runs(
                                sockets["client-A"], http, url, prompt_id, "11"
                            )
                        )
                    response = await http.post(f"{url}/prompt", json=body)
                    assert response.status_code == post["status"], name
                    if response.status_code == 200:
                        assert response.json() == post["resp"], name
                        entry = await _wait_history(http, url, prompt_id)
                        recorded_history = next(
                            (
                                h["resp"]
                                for h in scenario["http"]
                                if h["req"].startswith("GET /history")
                            ),
                            None,
                        )
                        if recorded_history:
                            recorded_entry = recorded_history.get(prompt_id, recorded_history)
                            assert entry["outputs"] == recorded_entry["outputs"], name
                            assert (
                                entry["status"]["status_str"]
                                == recorded_entry["status"]["status_str"]
                            )
                            assert [m[0] for m in entry["status"]["messages"]] == [
                                m[0] for m in recorded_entry["status"]["messages"]
                            ], name
                    else:
                        assert response.json() == post["resp"], name
                    if interrupter is not None:
                        await asyncio.wait_for(interrupter, 5)
                for socket_name, recorded in scenario["sockets"].items():
                    live = await sockets[socket_name].window(len(recorded))
                    expected = [shape(m) for m in recorded]
                    got = [shape(m) for m in live]
                    if got != expected:
                        index = next(
                            i for i, want in enumerate(expected) if i >= len(got) or got[i] != want
                        )
                        have = got[index] if index < len(got) else None
                        mismatches.append(
                            f"{name}/{socket_name} #{index}: want {expected[index]}, got {have}"
                        )
    finally:
        for socket in sockets.values():
            await socket.close()
    assert mismatches == []


@pytest.mark.parametrize("trace_names", [("ws-trace-nomodel.json", "ws-trace-nomodel-cached.json")])
async def test_replayed_first_run_and_cached_rerun_match_the_recordings(
    start_emulator, trace_names
) -> None:
    emulator = await start_emulator()
    async with httpx.AsyncClient(trust_env=False, timeout=15.0) as http:
        for trace_name in trace_names:
            trace = json.loads((TRACES / trace_name).read_text())
            socket = RecordingSocket(emulator.url, trace["client_id"])
            await socket.open()
            try:
                post = trace["http"][0]
                response = await http.post(f"{emulator.url}/prompt", json=post["request"])
                assert response.status_code == 200
                assert set(response.json()) == set(post["response"])
                assert response.json()["number"] == post["response"]["number"]
                recorded = [
                    {"type": m["type"], "data": m["data"]} if "type" in m else m
                    for m in trace["ws_messages"]
                ]
                live = await socket.window(len(recorded))
                assert [shape(m) for m in live] == [shape(m) for m in recorded]
                prompt_id = response.json()["prompt_id"]
                history = (await http.get(f"{emulator.url}/history/{prompt_id}")).json()[prompt_id]
                recorded_history = trace["http"][1]["response"][post["response"]["prompt_id"]]
                assert set(history) == set(recorded_history)
                assert history["outputs"] == recorded_history["outputs"]
                assert (
                    len(history["prompt"]) == 5
                    and history["prompt"][4] == recorded_history["prompt"][4]
                )
                view = next((h for h in trace["http"] if h["path"] == "/view"), None)
                if view is not None:
                    got = await http.get(f"{emulator.url}/view", params=view["params"])
                    assert got.status_code == 200
                    assert got.headers["content-type"] == view["content_type"]
                    assert got.headers["content-disposition"] == view["content_disposition"]
                    assert got.content[:4] == b"\x89PNG"
            finally:
                await socket.close()


async def test_validation_error_bodies_match_the_recorded_ones(shared_emulator) -> None:
    recorded = json.loads((TRACES / "validation-errors.json").read_text())
    graphs = {
        "unknown_class_type": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
            },
            "3": {"class_type": "NoSuchNode", "inputs": {}},
        },
        "no_output_nodes": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
            },
        },
    }
    async with httpx.AsyncClient(trust_env=False) as http:
        for case, graph in graphs.items():
            response = await http.post(f"{shared_emulator.url}/prompt", json={"prompt": graph})
            assert (response.status_code, response.json()) == (
                recorded[case]["status"],
                recorded[case]["body"],
            )
        response = await http.post(f"{shared_emulator.url}/prompt", json={"client_id": "x"})
        assert (response.status_code, response.json()) == (
            recorded["no_prompt_key"]["status"],
            recorded["no_prompt_key"]["body"],
        )
