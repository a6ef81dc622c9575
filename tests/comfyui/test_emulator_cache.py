"""The emulator's classic cache against ComfyUI 0.8.0's rules (comfyui-protocol.md §4.8, §3.5
items 2-3, §6 item 10): nodes are keyed by class, literal inputs and their upstream chain, a
partially cached prompt runs only the nodes that missed and reads the hits' cached outputs, and
`--cache-none` re-executes everything. Each test has an emulator of its own, so no other prompt
evicts its entries."""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass

import httpx
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect

from tests.support.emulator import EmulatorHandle, StartEmulator
from tests.support.graphs import (
    empty_image,
    emulator_sampler,
    fresh_color,
    sampler_graph,
    save_image,
)

CLIENT_ID = "cache-client"


@dataclass
class PromptRun:
    """One prompt as the submitting client saw it: every message until `executing null`."""

    prompt_id: str
    messages: list[dict]

    def of_type(self, kind: str) -> list[dict]:
        return [m["data"] for m in self.messages if m["type"] == kind]

    @property
    def cached(self) -> list[str]:
        (data,) = self.of_type("execution_cached")
        return data["nodes"]

    @property
    def executing(self) -> list[str]:
        """Nodes announced by `executing`, without the final `executing null`."""
        return [d["node"] for d in self.of_type("executing") if d["node"] is not None]

    @property
    def executed(self) -> dict[str, dict]:
        return {d["node"]: d["output"] for d in self.of_type("executed")}

    @property
    def outcome(self) -> str:
        ends = ("execution_success", "execution_error", "execution_interrupted")
        return next(m["type"] for m in self.messages if m["type"] in ends)


class PromptClient:
    """Submits prompts with a client_id and collects each prompt's messages from one socket."""

    def __init__(self, emulator: EmulatorHandle, socket: ClientConnection, http: httpx.AsyncClient):
        self.emulator = emulator
        self.socket = socket
        self.http = http

    async def submit(self, graph: dict) -> str:
        response = await self.http.post(
            f"{self.emulator.url}/prompt", json={"prompt": graph, "client_id": CLIENT_ID}
        )
        assert response.status_code == 200, response.text
        prompt_id: str = response.json()["prompt_id"]
        return prompt_id

    async def messages_until_done(self, prompt_id: str, timeout: float = 20.0) -> PromptRun:
        messages: list[dict] = []
        deadline = time.monotonic() + timeout
        while True:
            frame = await asyncio.wait_for(self.socket.recv(), deadline - time.monotonic())
            if isinstance(frame, bytes):
                continue
            message = json.loads(frame)
            data = message["data"]
            if isinstance(data, dict) and data.get("prompt_id") not in (None, prompt_id):
                continue
            messages.append(message)
            if message["type"] == "executing" and data["node"] is None:
                return PromptRun(prompt_id, messages)

    async def run(self, graph: dict) -> PromptRun:
        return await self.messages_until_done(await self.submit(graph))

    async def image(self, output: dict) -> Image.Image:
        (entry,) = output["images"]
        response = await self.http.get(f"{self.emulator.url}/view", params=entry)
        assert response.status_code == 200
        return Image.open(io.BytesIO(response.content)).convert("RGB")


class connected_client:
    """`async with connected_client(emulator) as client`: one socket + one HTTP client."""

    def __init__(self, emulator: EmulatorHandle) -> None:
        self.emulator = emulator

    async def __aenter__(self) -> PromptClient:
        url = self.emulator.url.replace("http", "ws", 1)
        self.socket = await connect(f"{url}/ws?clientId={CLIENT_ID}", proxy=None)
        self.http = httpx.AsyncClient(trust_env=False, timeout=15.0)
        greeting = json.loads(await self.socket.recv())
        assert greeting["type"] == "status"
        return PromptClient(self.emulator, self.socket, self.http)

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        await self.socket.close()


def with_prefix(graph: dict, node_id: str, prefix: str) -> dict:
    changed = json.loads(json.dumps(graph))
    changed[node_id]["inputs"]["filename_prefix"] = prefix
    return changed


def two_output_graph(color: int) -> dict:
    """EmptyImage -> EmulatorSampler -> two SaveImage outputs."""
    graph = sampler_graph(3, 0.0, "cache/first", color=color)
    graph["4"] = save_image("2", "cache/second")
    return graph


def slow_chain_graph(color: int) -> dict:
    """EmptyImage -> a one-step sampler -> a slow interruptible sampler -> SaveImage."""
    return {
        "1": empty_image(color=color),
        "2": emulator_sampler("1", 1, 0.0),
        "3": emulator_sampler("2", 30, 0.03),
        "4": save_image("3", "cache/chain"),
    }


async def test_partial_cache_hit_executes_only_the_changed_output_node(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator()
    graph = sampler_graph(3, 0.0, "cache/before", color=fresh_color())
    async with connected_client(emulator) as client:
        await client.run(graph)
        partial = await client.run(with_prefix(graph, "3", "cache/after"))

    assert partial.outcome == "execution_success"
    assert partial.cached == ["1", "2"]
    assert partial.executing == ["3"]
    assert [d["node"] for d in partial.of_type("progress")] == []


async def test_partial_cache_hit_saves_the_image_computed_by_the_cached_nodes(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator()
    graph = sampler_graph(3, 0.0, "cache/before", color=fresh_color())
    async with connected_client(emulator) as client:
        full = await client.run(graph)
        partial = await client.run(with_prefix(graph, "3", "cache/after"))
        full_image = await client.image(full.executed["3"])
        partial_image = await client.image(partial.executed["3"])

    assert partial.executed["3"]["images"][0]["filename"] == "after_00001_.png"
    assert partial_image.size == full_image.size
    assert partial_image.tobytes() == full_image.tobytes()


async def test_partially_cached_run_sends_the_recorded_message_order(
    start_emulator: StartEmulator,
) -> None:
    # §3.5 item 3: execution_cached lists the hits, only the nodes that run get `executing`,
    # and a cached output node still gets `executed` (its old UI) and a finished progress_state.
    emulator = await start_emulator()
    graph = two_output_graph(fresh_color())
    async with connected_client(emulator) as client:
        first = await client.run(graph)
        partial = await client.run(with_prefix(graph, "4", "cache/second-again"))

    sequence = [
        (m["type"], m["data"].get("node"))
        if m["type"] in ("executing", "executed")
        else (m["type"], tuple(sorted(m["data"].get("nodes", ()))))
        if m["type"] in ("execution_cached", "progress_state")
        else (m["type"], None)
        for m in partial.messages
        if m["type"] != "status"
    ]
    assert sequence == [
        ("execution_start", None),
        ("execution_cached", ("1", "2", "3")),
        ("executed", "3"),
        ("progress_state", ("3",)),
        ("progress_state", ("3", "4")),
        ("executing", "4"),
        ("executed", "4"),
        ("progress_state", ("3", "4")),
        ("execution_success", None),
        ("executing", None),
    ]
    assert partial.executed["3"] == first.executed["3"]
    assert partial.executed["4"] != first.executed["4"]


async def test_identical_resubmission_after_an_interrupt_runs_only_the_unfinished_nodes(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator()
    graph = slow_chain_graph(fresh_color())
    async with connected_client(emulator) as client:
        prompt_id = await client.submit(graph)
        messages: list[dict] = []
        while not any(
            m["type"] == "progress" and m["data"]["node"] == "3" for m in messages
        ):  # interrupt once the slow sampler is under way
            messages.append(json.loads(await asyncio.wait_for(client.socket.recv(), 20)))
        await client.http.post(f"{emulator.url}/interrupt", json={"prompt_id": prompt_id})
        interrupted = await client.messages_until_done(prompt_id)
        resubmitted = await client.run(graph)

    assert interrupted.outcome == "execution_interrupted"
    assert interrupted.of_type("execution_interrupted")[0]["executed"] == ["1", "2"]
    assert resubmitted.outcome == "execution_success"
    assert resubmitted.cached == ["1", "2"]
    assert resubmitted.executing == ["3", "4"]


async def test_changed_upstream_literal_invalidates_every_node_downstream_of_it(
    start_emulator: StartEmulator,
) -> None:
    emulator = await start_emulator()
    graph = sampler_graph(3, 0.0, "cache/steps", color=fresh_color())
    changed = json.loads(json.dumps(graph))
    changed["2"]["inputs"]["steps"] = 4
    async with connected_client(emulator) as client:
        first = await client.run(graph)
        second = await client.run(changed)
        first_image = await client.image(first.executed["3"])
        second_image = await client.image(second.executed["3"])

    assert second.cached == ["1"]
    assert second.executing == ["2", "3"]
    assert second_image.tobytes() != first_image.tobytes()


async def test_cache_keys_ignore_node_ids(start_emulator: StartEmulator) -> None:
    # The key is class + literal inputs + upstream chain, not the node id (§4.8).
    emulator = await start_emulator()
    graph = sampler_graph(3, 0.0, "cache/renumbered", color=fresh_color())
    renumbered = {
        "10": graph["1"],
        "20": {**graph["2"], "inputs": {**graph["2"]["inputs"], "images": ["10", 0]}},
        "30": {**graph["3"], "inputs": {**graph["3"]["inputs"], "images": ["20", 0]}},
    }
    async with connected_client(emulator) as client:
        first = await client.run(graph)
        second = await client.run(renumbered)

    assert second.cached == ["10", "20", "30"]
    assert second.executing == []
    assert second.executed["30"] == first.executed["3"]


async def test_cache_keeps_only_the_latest_prompts_entries(start_emulator: StartEmulator) -> None:
    # BasicCache.clean_unused: a different prompt in between evicts the first one's nodes (§4.8).
    emulator = await start_emulator()
    graph = sampler_graph(3, 0.0, "cache/evicted", color=fresh_color())
    other = sampler_graph(3, 0.0, "cache/other", color=fresh_color())
    async with connected_client(emulator) as client:
        await client.run(graph)
        await client.run(other)
        again = await client.run(graph)

    assert again.cached == []
    assert again.executing == ["1", "2", "3"]


async def test_cache_none_re_executes_an_identical_prompt(start_emulator: StartEmulator) -> None:
    emulator = await start_emulator(extra_args=["--cache-none"])
    graph = sampler_graph(3, 0.0, "cache/none", color=fresh_color())
    async with connected_client(emulator) as client:
        first = await client.run(graph)
        second = await client.run(graph)

    assert second.cached == []
    assert second.executing == ["1", "2", "3"]
    assert second.executed["3"] != first.executed["3"]
    assert len(list((emulator.output_dir / "cache").glob("none_*_.png"))) == 2
