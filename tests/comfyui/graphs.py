"""API-format graphs the driver tests send to the emulator."""

from __future__ import annotations

import itertools

_colors = itertools.count(1)


def fresh_color() -> int:
    """A colour no other graph in this test run used, so ComfyUI's cache never hits by accident."""
    return next(_colors) * 7919 % 0xFFFFFF


def save_graph(
    prefix: str = "test/run", *, color: int | None = None, width: int = 32, height: int = 24
) -> dict:
    """EmptyImage -> ImageInvert -> SaveImage, the minimal graph of comfyui-protocol.md §5."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {
                "width": width,
                "height": height,
                "batch_size": 1,
                "color": fresh_color() if color is None else color,
            },
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def sampler_graph(
    steps: int, seconds_per_step: float, prefix: str = "test/sampled", *, color: int | None = None
) -> dict:
    """EmptyImage -> EmulatorSampler (progress per step, interruptible) -> SaveImage."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {
                "width": 16,
                "height": 16,
                "batch_size": 1,
                "color": fresh_color() if color is None else color,
            },
        },
        "2": {
            "class_type": "EmulatorSampler",
            "inputs": {"images": ["1", 0], "steps": steps, "seconds_per_step": seconds_per_step},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }
