"""Rendering: (manifest, params) -> the exact ComfyUI API graph plus the resolved params.

Pure: the loaded template is deep-copied and never mutated; the only input besides the arguments is
the random generator, which callers pass in when they need repeatable seeds.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from manifests.definitions import LoraPrompt, WorkflowManifest
from manifests.image_inputs import (
    ImageSource,
    is_inline_image,
    parse_image_source,
    upload_placeholder,
)
from manifests.model_inputs import ModelFromUrl, is_model_reference, parse_model_source
from manifests.validation import same_value, validate_params

_system_random = random.SystemRandom()


@dataclass(frozen=True)
class RenderedPrompt:
    """A graph ready for ComfyUI's POST /prompt, the params that produced it, and their revision."""

    workflow_id: str
    prompt: dict[str, Any]
    params: dict[str, Any]
    revision: str
    # Files (`image`, `file`) the request brings (url / stored base64): the GPU worker uploads each
    # to its ComfyUI and writes the uploaded name into `targets` ("<node id>.<input>"), which hold
    # a placeholder.
    image_inputs: list[ImageInput] = field(default_factory=list)
    # Model files the request gives by URL: the graph already names each by the file name the GPU
    # worker gives it in `folder` (ModelFromUrl.file_name); the worker downloads it first.
    model_inputs: list[ModelInput] = field(default_factory=list)


@dataclass(frozen=True)
class ImageInput:
    param: str
    source: ImageSource
    targets: list[str]


@dataclass(frozen=True)
class ModelInput:
    param: str
    folder: str
    source: ModelFromUrl
    targets: list[str]


def is_link(value: Any) -> bool:
    """A link is a 2-element list [source node id, output index] (comfyui-protocol.md §2.1)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def resolve_random(manifest: WorkflowManifest, params: dict[str, Any], rng: random.Random) -> None:
    """Replace each random token (e.g. seed "random") with a drawn integer, in place."""
    for name, defn in manifest.parameters.items():
        token = defn.random_token()
        if token is not None and name in params and same_value(params[name], token):
            low, high = defn.random_range()
            params[name] = rng.randint(low, high)


def apply_lora_prompt(lora_prompt: LoraPrompt, params: dict[str, Any]) -> None:
    """Put the trigger words of each selected LoRA around the prompt, in place.

    As the original service does it: nothing for no LoRA, "None" (any case), a LoRA loras.yaml
    does not describe, or an empty prompt; otherwise the stripped prefix, prompt and suffix,
    those that are not empty, joined with ", ".
    """
    prompt = params.get(lora_prompt.prompt_param)
    for name in lora_prompt.lora_params:
        selected = params.get(name)
        if not isinstance(selected, str) or not selected or selected.lower() == "none":
            continue
        entry = lora_prompt.catalogue.get(selected)
        if entry is None or not isinstance(prompt, str) or not prompt:
            continue
        parts = [prompt.strip()]
        if entry.prefix:
            parts.insert(0, entry.prefix.strip())
        if entry.suffix:
            parts.append(entry.suffix.strip())
        prompt = ", ".join(part for part in parts if part)
    if prompt is not None:
        params[lora_prompt.prompt_param] = prompt


def bypass_node(graph: dict[str, Any], node_id: str, outputs: Mapping[int, str]) -> None:
    """Remove `node_id`; consumers of its output N get what fed its input `outputs[N]`."""
    removed = graph.pop(node_id)
    removed_inputs = removed.get("inputs", {})
    for node in graph.values():
        inputs = node.get("inputs", {})
        for input_name, value in inputs.items():
            if is_link(value) and value[0] == node_id:
                # The loader checked that every consumed output index has a mapping.
                inputs[input_name] = copy.deepcopy(removed_inputs[outputs[value[1]]])


def render_prompt(
    manifest: WorkflowManifest,
    params: Mapping[str, Any],
    *,
    revision: str,
    rng: random.Random | None = None,
) -> RenderedPrompt:
    """Validate `params`, resolve random values, and write them into a copy of the template.

    Raises ParamsInvalid with every problem when the params do not fit the manifest.
    """
    resolved = validate_params(manifest, params)
    resolve_random(manifest, resolved, rng or _system_random)
    if manifest.lora_prompt is not None:
        apply_lora_prompt(manifest.lora_prompt, resolved)
    graph = copy.deepcopy(manifest.template)
    model_folders = manifest.model_folders()
    models: dict[str, ModelFromUrl] = {
        name: parse_model_source(value)
        for name, value in resolved.items()
        if name in model_folders and is_model_reference(value)
    }
    for name, value in resolved.items():
        defn = manifest.parameters[name]
        if defn.takes_file and is_inline_image(value):
            value = upload_placeholder(name)
        elif name in models:
            value = models[name].file_name()
        for ref in manifest.bindings.get(name, []):
            graph[ref.node_id]["inputs"][ref.input] = copy.deepcopy(value)
    for name, bypass in manifest.bypasses.items():
        if name in resolved and any(same_value(resolved[name], v) for v in bypass.when):
            if bypass.node_id in graph:
                bypass_node(graph, bypass.node_id, bypass.outputs)
    image_inputs = [
        ImageInput(
            param=name,
            source=parse_image_source(value),
            targets=[ref.key() for ref in manifest.bindings.get(name, []) if ref.node_id in graph],
        )
        for name, value in resolved.items()
        if manifest.parameters[name].takes_file and is_inline_image(value)
    ]
    model_inputs = [
        ModelInput(
            param=name,
            folder=model_folders[name],
            source=source,
            targets=[ref.key() for ref in manifest.bindings.get(name, []) if ref.node_id in graph],
        )
        for name, source in models.items()
    ]
    return RenderedPrompt(
        workflow_id=manifest.id,
        prompt=graph,
        params=resolved,
        revision=revision,
        image_inputs=image_inputs,
        model_inputs=[m for m in model_inputs if m.targets],
    )
