"""How long each node of one prompt took, from ComfyUI's events: a node runs from its `executing`
message to its `executed` (sent once it has produced its UI output), else to the next node's
`executing` or the prompt's end (comfyui-protocol.md §3.5).

ComfyUI stamps `execution_start`, `execution_cached` and `execution_success` with a time but not
`executing` or `executed` (§3.2; so in the recorded 0.8.0 traces), so the times are this worker's
monotonic clock at each message's receipt (the events' `received_at`). Ending an output node at its
`executed` matters: after an idle spell ComfyUI's messages after it can arrive 0.3-0.45 s late
(a garbage collection pass holds its interpreter; recorded in ws-trace-nomodel.json).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from activities.comfyui.events import (
    ComfyEvent,
    NodeExecuted,
    NodeExecuting,
    NodesCached,
    PromptFailed,
    PromptInterrupted,
    PromptSucceeded,
)
from temporal_workflows.payloads import NodeTiming


@dataclass(frozen=True)
class NodeRun:
    """One run of a node, on this worker's monotonic clock; a cached node's is the instant
    ComfyUI named it cached (its `execution_cached` message reached the clock)."""

    node_id: str
    class_type: str | None
    started: float
    ended: float
    cached: bool = False


class NodeClock:
    """Collects per-node times from the events of one prompt (`on_event`), for `timings()`."""

    def __init__(self, graph: Mapping[str, Any]) -> None:
        self._graph = graph
        self._cached: list[str] = []
        self._cached_at: float | None = None
        self._runs: list[NodeRun] = []
        # Node id -> seconds, in the order the nodes first ran. A node can run more than once in
        # one prompt (lazy inputs, async nodes, subgraph expansion, §3.2): its times add up.
        self._seconds: dict[str, float] = {}
        self._class_types: dict[str, str | None] = {}
        self._running: tuple[str, float] | None = None

    def on_event(self, event: ComfyEvent) -> None:
        if isinstance(event, NodesCached):
            self._cached = list(event.nodes)
            self._cached_at = time.monotonic()  # the message has no time of its own
        elif isinstance(event, NodeExecuting):
            self._stop(event.received_at)
            self._running = (event.node_id, event.received_at)
            self._seconds.setdefault(event.node_id, 0.0)
            self._class_types.setdefault(event.node_id, event.class_type)
        elif isinstance(event, NodeExecuted):
            # Also sent for cached output nodes, which are not running (§3.5).
            if self._running is not None and self._running[0] == event.node_id:
                self._stop(event.received_at)
        elif isinstance(event, PromptSucceeded | PromptFailed | PromptInterrupted):
            self._stop(event.received_at)

    def timings(self, now: float | None = None) -> list[NodeTiming]:
        """Cached nodes first (ComfyUI names them before it runs any, §3.5), then the nodes it ran
        in the order they started. A node still running (the end was not seen, e.g. the socket
        dropped) counts until `now` (default: the monotonic clock now)."""
        self._stop(time.monotonic() if now is None else now)
        cached = [
            NodeTiming(node_id=node, class_type=self._class_type(node), seconds=0.0, cached=True)
            for node in self._cached
            if node not in self._seconds
        ]
        ran = [
            NodeTiming(
                node_id=node,
                class_type=self._class_types.get(node) or self._class_type(node),
                seconds=round(seconds, 4),
            )
            for node, seconds in self._seconds.items()
        ]
        return cached + ran

    def runs(self, now: float | None = None) -> list[NodeRun]:
        """Cached nodes, then every run of a node in the order they started (a node run twice
        appears twice); a node still running ends at `now` as in `timings`."""
        self._stop(time.monotonic() if now is None else now)
        at = self._cached_at or 0.0
        cached = [
            NodeRun(node, self._class_type(node), at, at, cached=True)
            for node in self._cached
            if node not in self._seconds
        ]
        return cached + self._runs

    def _stop(self, at: float) -> None:
        if self._running is not None:
            node, since = self._running
            self._seconds[node] += max(at - since, 0.0)
            class_type = self._class_types.get(node) or self._class_type(node)
            self._runs.append(NodeRun(node, class_type, since, max(at, since)))
            self._running = None

    def _class_type(self, node: str) -> str | None:
        entry = self._graph.get(node)
        return entry.get("class_type") if isinstance(entry, Mapping) else None
