"""loras.yaml, the LoRA catalogue: each LoRA file's description, examples and trigger words; and
which parameters of a workflow select a LoRA, so the prompt can take those trigger words."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.definitions import InputRef, LoraEntry, LoraPrompt, ParameterDef
from manifests.errors import ManifestError
from manifests.loading.problems import key_of, validate_what_is_valid
from manifests.loading.yaml_files import display_path, read_yaml
from manifests.render import is_link

# LoraLoader's `lora_name`, and the numbered inputs of LoRA stack nodes (`lora_1_name`, ...).
LORA_NAME_INPUT = re.compile(r"lora(_\d+)?_name")
# The original service knows the LoRA and the prompt by these parameter names.
LORA_PARAM = "lora"
PROMPT_PARAM = "prompt"

_SHAPE = (
    "must map LoRA file names to {description, prefix, suffix, examples}, "
    "or list entries that each have a name"
)


@dataclass
class LoraCatalogue:
    """What loras.yaml describes, by LoRA file name, and the problems found in it."""

    entries: dict[str, LoraEntry] = field(default_factory=dict)
    errors: list[ManifestError] = field(default_factory=list)
    # The file as a whole could not be read: trust no workflow (as for base.yaml).
    unreadable: bool = False


def load_loras(path: Path) -> LoraCatalogue:
    """Read loras.yaml; a missing file is an empty catalogue, a bad entry is left out."""
    if not path.exists():
        return LoraCatalogue()
    shown = display_path(path)
    data, problem = read_yaml(path)
    if problem is None and data is not None and not isinstance(data, (dict, list)):
        problem = _SHAPE
    if problem is not None:
        return LoraCatalogue(errors=[ManifestError(shown, None, None, problem)], unreadable=True)
    catalogue = LoraCatalogue()
    for label, raw in _raw_entries(data, shown, catalogue.errors):
        checked = validate_what_is_valid(LoraEntry, raw)
        for loc, message in checked.problems:
            catalogue.errors.append(ManifestError(shown, None, key_of(label, loc), message))
        if checked.model is None or checked.problems:
            continue
        entry = checked.model
        if entry.name in catalogue.entries:
            catalogue.errors.append(
                ManifestError(shown, None, label, f"LoRA '{entry.name}' is described twice")
            )
            continue
        catalogue.entries[entry.name] = entry
    return catalogue


def _raw_entries(data: Any, shown: str, errors: list[ManifestError]) -> list[tuple[str, Any]]:
    """(key for errors, entry mapping with its `name`) for each entry of either shape."""
    if data is None:
        return []
    out: list[tuple[str, Any]] = []
    if isinstance(data, list):
        for i, raw in enumerate(data):
            if not isinstance(raw, dict):
                message = "must be a mapping of name, description, prefix, suffix, examples"
                errors.append(ManifestError(shown, None, f"[{i}]", message))
                continue
            out.append((f"[{i}]", raw))
        return out
    for key, raw in data.items():
        label = str(key)
        if not isinstance(key, str) or not key:
            errors.append(ManifestError(shown, None, label, "a LoRA file name must be a string"))
            continue
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            errors.append(
                ManifestError(
                    shown, None, label, "must be a mapping of description, prefix, suffix, examples"
                )
            )
            continue
        if "name" in raw and raw["name"] != key:
            errors.append(
                ManifestError(
                    shown,
                    None,
                    f"{label}.name",
                    f"differs from the file name '{key}' the entry is listed under; "
                    "leave `name` out, the key is the file name",
                )
            )
            continue
        out.append((label, {**raw, "name": key}))
    return out


def lora_prompt(
    parameters: dict[str, ParameterDef],
    bindings: dict[str, list[InputRef]],
    graph: dict[str, Any],
    catalogue: dict[str, LoraEntry],
) -> LoraPrompt | None:
    """The workflow's prompt and LoRA-selecting parameters, when it has both and there is a
    catalogue; None otherwise.

    A parameter selects a LoRA when it sets a LoRA loader's `lora_name` (or `lora_<n>_name`)
    input, directly or through the primitive node `map_to` names, or when it is called `lora`
    as in the original service (and is bound to the graph). The prompt is the parameter called
    (or mapped to) `prompt`.
    """
    if not catalogue:
        return None
    prompt = next((n for n in parameters if n == PROMPT_PARAM), None) or next(
        (n for n, d in parameters.items() if d.map_to == PROMPT_PARAM), None
    )
    if prompt is None or parameters[prompt].type != "string":
        return None
    selectors = [
        name
        for name, defn in parameters.items()
        if name != prompt
        and defn.type == "string"
        and bindings.get(name)
        and (name == LORA_PARAM or _sets_lora_name(bindings[name], graph))
    ]
    if not selectors:
        return None
    return LoraPrompt(prompt_param=prompt, lora_params=selectors, catalogue=catalogue)


def _sets_lora_name(refs: list[InputRef], graph: dict[str, Any]) -> bool:
    for ref in refs:
        if LORA_NAME_INPUT.fullmatch(ref.input):
            return True
        # A primitive node (map_to) passes the value on through a link.
        for node in graph.values():
            for input_name, value in node["inputs"].items():
                if (
                    is_link(value)
                    and value[0] == ref.node_id
                    and LORA_NAME_INPUT.fullmatch(input_name)
                ):
                    return True
    return False
