"""With traces on, one OpenTelemetry span per run of a ComfyUI node in an attempt of
`execute_prompt`, under the attempt's `RunActivity:execute_prompt` span, timed by the node clock
(node_clock.py: this worker's receipt of ComfyUI's messages).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from activities.workers.node_timings import UNKNOWN_CLASS_TYPE

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from activities.generation.node_clock import NodeRun

SPAN_PREFIX = "ComfyUINode:"


def record_node_spans(tracer: Tracer, runs: Iterable[NodeRun], *, prompt_id: str) -> None:
    """A span per run, named `ComfyUINode:<class_type>`, child of the current span, with the
    node's id, class_type and whether ComfyUI took it from its cache (a zero-length span)."""
    # The runs are on the monotonic clock; spans take wall-clock nanoseconds.
    wall_offset = time.time_ns() - time.monotonic_ns()
    for run in runs:
        class_type = run.class_type or UNKNOWN_CLASS_TYPE
        span = tracer.start_span(
            SPAN_PREFIX + class_type,
            start_time=wall_offset + int(run.started * 1e9),
            attributes={
                "comfyui.node.id": run.node_id,
                "comfyui.node.class_type": class_type,
                "comfyui.node.cached": run.cached,
                "comfyui.prompt_id": prompt_id,
            },
        )
        span.end(end_time=wall_offset + int(run.ended * 1e9))
