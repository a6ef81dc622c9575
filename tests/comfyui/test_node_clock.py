"""Per-node timings from what real ComfyUI 0.8.0 sent (traces/, recorded with each message's
arrival time): the recorded messages go through the prompt follower's decoding, arriving at their
recorded times, into the GPU worker's NodeClock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from activities.comfyui.client import ComfyUIClient
from activities.comfyui.prompt_run import PromptFollower
from activities.generation.node_clock import NodeClock

TRACES = Path(__file__).resolve().parent / "traces"


def replay(trace_name: str) -> NodeClock:
    trace = json.loads((TRACES / trace_name).read_text())
    clock = NodeClock(trace["workflow"])
    # Decoding needs no connection: the follower is fed the recorded text frames directly.
    follower = PromptFollower(
        cast(ComfyUIClient, None), trace["prompt_id"], trace["workflow"], clock.on_event
    )
    follower.release(None)
    for message in trace["ws_messages"]:
        if "type" not in message:  # a binary frame, summarised
            continue
        follower.last_message_at = message["t"]
        follower._on_text(json.dumps({"type": message["type"], "data": message["data"]}))
    return clock


def summary(clock: NodeClock, now: float) -> list[tuple[Any, ...]]:
    return [
        (t.node_id, t.class_type, round(t.seconds, 4), t.cached) for t in clock.timings(now=now)
    ]


def test_partially_cached_sd15_run_times_the_three_nodes_it_ran():
    clock = replay("ws-trace-sd15-warm.json")
    assert summary(clock, now=100.0) == [
        ("4", "CheckpointLoaderSimple", 0.0, True),
        ("6", "CLIPTextEncode", 0.0, True),
        ("7", "CLIPTextEncode", 0.0, True),
        ("5", "EmptyLatentImage", 0.0, True),
        # executing 3 at 0.0096 s, executing 8 at 4.3815 s, executing 9 at 4.6424 s
        ("3", "KSampler", 4.3719, False),
        ("8", "VAEDecode", 0.2609, False),
        # SaveImage ends at its `executed` (4.6444 s), not at execution_success.
        ("9", "SaveImage", 0.002, False),
    ]


def test_an_output_node_ends_at_its_executed_message_not_at_the_late_success():
    # First prompt after startup: ComfyUI's closing messages arrived 0.44 s after `executed`.
    clock = replay("ws-trace-nomodel.json")
    timings = {t.node_id: t for t in clock.timings(now=100.0)}
    assert timings["3"].class_type == "SaveImage"
    assert timings["3"].seconds == pytest.approx(0.0013, abs=1e-4)
    assert sum(t.seconds for t in timings.values()) < 0.01


def test_fully_cached_rerun_lists_every_node_as_cached():
    clock = replay("ws-trace-nomodel-cached.json")
    assert summary(clock, now=100.0) == [
        ("1", "EmptyImage", 0.0, True),
        ("2", "ImageInvert", 0.0, True),
        ("3", "SaveImage", 0.0, True),
    ]


def test_the_runs_behind_the_timings_are_laid_end_to_end_with_cached_nodes_first():
    # What the node spans of a trace are made of (activities/generation/node_spans.py).
    clock = replay("ws-trace-sd15-warm.json")
    runs = clock.runs(now=100.0)
    assert [(r.node_id, r.cached) for r in runs] == [
        ("4", True), ("6", True), ("7", True), ("5", True),
        ("3", False), ("8", False), ("9", False),
    ]  # fmt: skip
    assert all(r.started == r.ended for r in runs if r.cached)
    ran = [r for r in runs if not r.cached]
    assert [round(r.ended - r.started, 4) for r in ran] == [4.3719, 0.2609, 0.002]
    assert all(a.ended <= b.started for a, b in zip(ran, ran[1:], strict=False))
