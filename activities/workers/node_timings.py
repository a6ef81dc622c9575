"""`comfy_node_seconds{class_type}`: what a GPU worker's metrics observe of each node ComfyUI ran,
taken from the per-node timings `execute_prompt` returns (activities/generation/node_clock.py).
"""

from __future__ import annotations

from typing import Any

NODE_SECONDS_METRIC = "comfy_node_seconds"
NODE_SECONDS_HELP = (
    "Seconds ComfyUI spent on one node of a successful job, by class_type (from its executing "
    "events, measured by the GPU worker; cached nodes are not observed)."
)
NODE_SECONDS_LABELS = ("class_type",)
# Most nodes take milliseconds (encoders, savers), samplers and model loads seconds to minutes.
# (prometheus_client adds the +Inf bucket.)
NODE_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
UNKNOWN_CLASS_TYPE = "unknown"


def node_seconds(result: Any) -> list[tuple[str, float]]:
    """(class_type, seconds) of each node ComfyUI ran for an `execute_prompt` result (an
    ExecuteResult; anything without `node_timings` gives nothing). Cached nodes are left out: they
    took no time, and counting them would drag every class's figures toward zero."""
    timings = getattr(result, "node_timings", None) or []
    return [
        (node.class_type or UNKNOWN_CLASS_TYPE, node.seconds) for node in timings if not node.cached
    ]
