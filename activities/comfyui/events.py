"""Typed events of one prompt's life, decoded from ComfyUI's WebSocket messages
(comfyui-protocol.md §3.2, §3.3). `run_prompt` passes them to its `on_event` callback.

Events that bound a node's run carry `received_at`, the monotonic time their message arrived
(`time.monotonic()`): `executing` has no timestamp of its own (§3.2), and events received while
the prompt is being submitted reach the callback later, all at once.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field

from activities.comfyui.protocol import PreviewMetadata, UIOutput


@dataclass(frozen=True)
class PromptQueued:
    prompt_id: str
    number: float
    queue_position: int | None


@dataclass(frozen=True)
class PromptStarted:
    prompt_id: str
    timestamp_ms: int


@dataclass(frozen=True)
class NodesCached:
    prompt_id: str
    nodes: list[str]


@dataclass(frozen=True)
class NodeExecuting:
    prompt_id: str
    node_id: str
    class_type: str | None
    received_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class NodeProgress:
    prompt_id: str
    node_id: str
    value: float
    max: float

    @property
    def fraction(self) -> float:
        return self.value / self.max if self.max else 0.0


@dataclass(frozen=True)
class NodeExecuted:
    prompt_id: str
    node_id: str
    output: UIOutput = field(default_factory=dict)
    received_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class PreviewFrame:
    prompt_id: str
    node_id: str | None
    image_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class PromptSucceeded:
    prompt_id: str
    timestamp_ms: int | None
    received_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class PromptFailed:
    prompt_id: str
    node_id: str | None
    class_type: str | None
    exception_type: str
    exception_message: str
    received_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class PromptInterrupted:
    prompt_id: str
    node_id: str | None
    class_type: str | None
    received_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass(frozen=True)
class ConnectionLost:
    """The WebSocket dropped mid-run; messages until the reconnect are lost (§4.1)."""

    prompt_id: str
    reason: str


@dataclass(frozen=True)
class ConnectionRestored:
    prompt_id: str
    client_id: str


ComfyEvent = (
    PromptQueued
    | PromptStarted
    | NodesCached
    | NodeExecuting
    | NodeProgress
    | NodeExecuted
    | PreviewFrame
    | PromptSucceeded
    | PromptFailed
    | PromptInterrupted
    | ConnectionLost
    | ConnectionRestored
)

# Binary frame event types (comfyui-protocol.md §3.3).
BINARY_PREVIEW_IMAGE = 1
BINARY_TEXT = 3
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4
_PREVIEW_FORMATS = {1: "image/jpeg", 2: "image/png"}


@dataclass(frozen=True)
class BinaryFrame:
    """A decoded binary frame: a preview (types 1 and 4) or progress text (type 3)."""

    event_type: int
    image_type: str | None = None
    data: bytes = b""
    metadata: PreviewMetadata | None = None
    node_id: str | None = None
    text: str | None = None


def decode_binary(frame: bytes) -> BinaryFrame | None:
    """Split a binary frame into its header and payload; None for unknown or short frames."""
    if len(frame) < 8:
        return None
    (event_type,) = struct.unpack_from(">I", frame, 0)
    if event_type == BINARY_PREVIEW_IMAGE:
        (image_format,) = struct.unpack_from(">I", frame, 4)
        return BinaryFrame(event_type, _PREVIEW_FORMATS.get(image_format, "image/jpeg"), frame[8:])
    if event_type == BINARY_PREVIEW_IMAGE_WITH_METADATA:
        (length,) = struct.unpack_from(">I", frame, 4)
        try:
            metadata: PreviewMetadata = json.loads(frame[8 : 8 + length])
        except ValueError:
            return None
        return BinaryFrame(
            event_type,
            str(metadata.get("image_type") or "image/jpeg"),
            frame[8 + length :],
            metadata=metadata,
            node_id=metadata.get("node_id"),
        )
    if event_type == BINARY_TEXT:
        (length,) = struct.unpack_from(">I", frame, 4)
        node_id = frame[8 : 8 + length].decode("utf-8", "replace")
        return BinaryFrame(
            event_type, node_id=node_id, text=frame[8 + length :].decode("utf-8", "replace")
        )
    return None
