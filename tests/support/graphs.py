"""API-format graphs for the tests: every graph the suites send to ComfyUI or write as a workflow
file is built here. Nodes carry `_meta.title`, which manifests bind to and ComfyUI ignores."""

from __future__ import annotations

import itertools
from typing import Any

Graph = dict[str, Any]
Node = dict[str, Any]

_colors = itertools.count(1)
_widths = itertools.count(16)


def fresh_color() -> int:
    """A colour no other graph in this test run used, so ComfyUI's cache never hits by accident."""
    return next(_colors) * 7919 % 0xFFFFFF


def next_width() -> int:
    """An image width no other job of this session used: tells its prompt apart in ComfyUI."""
    return next(_widths)


def node(class_type: str, title: str, **inputs: Any) -> Node:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


def empty_image(
    width: int = 16, height: int = 16, *, color: int | None = None, batch_size: int = 1
) -> Node:
    """EmptyImage; `color=None` takes a fresh colour."""
    return node(
        "EmptyImage",
        "Empty Image",
        width=width,
        height=height,
        batch_size=batch_size,
        color=fresh_color() if color is None else color,
    )


def emulator_sampler(source: str, steps: int, seconds_per_step: float) -> Node:
    """The emulator's EmulatorSampler: one progress event per step, interruptible between steps."""
    return node(
        "EmulatorSampler",
        "Sampler",
        images=[source, 0],
        steps=steps,
        seconds_per_step=seconds_per_step,
    )


def save_image(source: str, prefix: str) -> Node:
    return node("SaveImage", "Save Image", images=[source, 0], filename_prefix=prefix)


def save_graph(
    prefix: str = "test/run", *, color: int | None = None, width: int = 32, height: int = 24
) -> Graph:
    """EmptyImage -> ImageInvert -> SaveImage, the minimal graph of comfyui-protocol.md §5."""
    return {
        "1": empty_image(width, height, color=color),
        "2": node("ImageInvert", "Invert", image=["1", 0]),
        "3": save_image("2", prefix),
    }


def sampler_graph(
    steps: int,
    seconds_per_step: float,
    prefix: str = "test/sampled",
    *,
    color: int | None = None,
    width: int = 16,
    height: int = 16,
) -> Graph:
    """EmptyImage -> EmulatorSampler (progress per step, interruptible) -> SaveImage."""
    return {
        "1": empty_image(width, height, color=color),
        "2": emulator_sampler("1", steps, seconds_per_step),
        "3": save_image("2", prefix),
    }


def invert_loaded_graph(image: str = "example.png", prefix: str = "inverted") -> Graph:
    """LoadImage -> ImageInvert -> SaveImage: an image input, inverted."""
    return {
        "1": node("LoadImage", "Load Image", image=image),
        "2": node("ImageInvert", "Invert", image=["1", 0]),
        "3": save_image("2", prefix),
    }


# The graphs the test manifests ship as workflow files (fixed colours: a manifest sets them).
SMOKE_GRAPH = save_graph("smoke", color=0, width=64, height=64)
SAMPLED_IMAGE_GRAPH = sampler_graph(2, 0.0, "gen", color=0)
EMULATOR_SAMPLER_GRAPH = sampler_graph(10, 0.05, "sampled", color=0, width=32, height=32)
INVERT_IMAGE_GRAPH = invert_loaded_graph()


def model_graph(prefix: str = "models") -> Graph:
    """EmptyImage -> EmulatorSampler fed a checkpoint with a LoRA (the emulator's stock loaders,
    whose choices are the files in its models folder) -> SaveImage."""
    sampler = emulator_sampler("1", 1, 0.0)
    sampler["inputs"]["model"] = ["3", 0]
    return {
        "1": empty_image(16, 16, color=0),
        "2": node("CheckpointLoaderSimple", "Checkpoint", ckpt_name="common.safetensors"),
        "3": node(
            "LoraLoaderModelOnly", "LoRA", model=["2", 0], lora_name="None", strength_model=1.0
        ),
        "4": sampler,
        "5": save_image("4", prefix),
    }
