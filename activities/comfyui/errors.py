"""Typed errors of the ComfyUI driver: ComfyUI's error bodies and messages become these once,
in the client, so callers can tell "fix your input" from "retry elsewhere" without parsing text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from activities.comfyui.protocol import (
    ExecutionErrorData,
    Graph,
    NodeErrors,
    PromptAccepted,
    PromptRejected,
)


class ComfyUIError(Exception):
    """Any failure talking to or reported by ComfyUI."""


class ComfyUIUnavailable(ComfyUIError):
    """ComfyUI refused the connection, died or dropped the prompt: retryable elsewhere."""


class ComfyUIStartError(ComfyUIUnavailable):
    """A supervised ComfyUI did not become ready; carries its last log lines."""

    def __init__(self, message: str, last_lines: list[str] | None = None) -> None:
        self.last_lines = list(last_lines or [])
        tail = "\n".join(self.last_lines[-20:])
        super().__init__(f"{message}\n--- last ComfyUI output ---\n{tail}" if tail else message)


@dataclass
class NodeError:
    """One problem ComfyUI found with one node's input (comfyui-protocol.md §2.1)."""

    node_id: str
    class_type: str | None
    input_name: str | None
    type: str
    message: str
    details: str
    extra_info: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        where = f"node {self.node_id}"
        if self.class_type:
            where += f" ({self.class_type})"
        if self.input_name:
            where += f" input '{self.input_name}'"
        text = f"{where}: {self.message}"
        if self.details and self.details != self.input_name:
            text += f" [{self.details}]"
        return text


class ComfyUIValidationError(ComfyUIError):
    """ComfyUI rejected the graph: HTTP 400, or 200 with non-empty node_errors. Not retryable."""

    def __init__(
        self, error_type: str, message: str, node_errors: list[NodeError], details: str = ""
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.details = details
        self.node_errors = node_errors
        parts = [f"{message} ({error_type})"]
        if details and not node_errors:
            parts.append(details)
        parts.extend(str(error) for error in node_errors)
        super().__init__("; ".join(parts))

    @classmethod
    def from_response(
        cls, body: PromptRejected | PromptAccepted, graph: Graph | None = None
    ) -> ComfyUIValidationError:
        """Build from a 400 body `{"error": {...}, "node_errors": {...}}` or a 200 body whose
        node_errors is not empty (comfyui-protocol.md §2.1)."""
        error = body.get("error")
        if not isinstance(error, dict):
            error = {}
        node_errors = parse_node_errors(body.get("node_errors") or {})
        error_type = str(error.get("type") or "prompt_outputs_failed_validation")
        message = str(error.get("message") or "Some outputs failed validation")
        details = str(error.get("details") or "")
        if not node_errors and error_type == "invalid_prompt":
            # "Node ID '#3'" names the bad node; ComfyUI leaves node_errors empty here.
            match = re.search(r"#([^']+)'", details)
            if match:
                node_id = match.group(1)
                class_type = None
                if graph and isinstance(graph.get(node_id), dict):
                    class_type = graph[node_id].get("class_type")
                node_errors = [NodeError(node_id, class_type, None, error_type, message, details)]
        return cls(error_type, message, node_errors, details)


def parse_node_errors(raw: Mapping[str, NodeErrors]) -> list[NodeError]:
    errors: list[NodeError] = []
    for node_id, entry in raw.items():
        if not isinstance(entry, dict):
            continue
        class_type = entry.get("class_type")
        for item in entry.get("errors") or []:
            extra = item.get("extra_info") or {}
            errors.append(
                NodeError(
                    node_id=str(node_id),
                    class_type=class_type,
                    input_name=extra.get("input_name"),
                    type=str(item.get("type", "")),
                    message=str(item.get("message", "")),
                    details=str(item.get("details", "")),
                    extra_info=extra,
                )
            )
    return errors


class ComfyUIExecutionError(ComfyUIError):
    """A node raised while the prompt ran (WebSocket/history `execution_error`, §4.3)."""

    def __init__(
        self,
        node_id: str | None,
        class_type: str | None,
        exception_type: str,
        exception_message: str,
        traceback: list[str] | None = None,
        prompt_id: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.class_type = class_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = list(traceback or [])
        self.prompt_id = prompt_id
        super().__init__(
            f"node {node_id} ({class_type}) raised {exception_type}: {exception_message.strip()}"
        )

    @staticmethod
    def is_out_of_memory(exception_type: str) -> bool:
        # "torch.OutOfMemoryError" on current torch, "torch.cuda.OutOfMemoryError" on old (§4.3).
        return exception_type.endswith("OutOfMemoryError")

    @classmethod
    def from_message(cls, data: ExecutionErrorData) -> ComfyUIExecutionError:
        exception_type = str(data.get("exception_type") or "Exception")
        kind = ComfyUIOutOfMemory if cls.is_out_of_memory(exception_type) else ComfyUIExecutionError
        return kind(
            node_id=None if data.get("node_id") is None else str(data.get("node_id")),
            class_type=data.get("node_type"),
            exception_type=exception_type,
            exception_message=str(data.get("exception_message") or ""),
            traceback=list(data.get("traceback") or []),
            prompt_id=data.get("prompt_id"),
        )


class ComfyUIOutOfMemory(ComfyUIExecutionError):
    """The GPU (or CPU) ran out of memory inside a node."""


class ComfyUIInterrupted(ComfyUIError):
    """The prompt was interrupted by someone else (not by our own cancel)."""

    def __init__(
        self, prompt_id: str, node_id: str | None = None, class_type: str | None = None
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.class_type = class_type
        where = f" at node {node_id} ({class_type})" if node_id else ""
        super().__init__(f"prompt {prompt_id} was interrupted{where}")


class ComfyUIStalled(ComfyUIError):
    """No message from ComfyUI for `stall_timeout` seconds while our prompt was running."""

    def __init__(self, prompt_id: str, seconds: float, node_id: str | None = None) -> None:
        self.prompt_id = prompt_id
        self.seconds = seconds
        self.node_id = node_id
        where = f" (last node {node_id})" if node_id else ""
        super().__init__(f"prompt {prompt_id}: no message from ComfyUI for {seconds:.1f} s{where}")
