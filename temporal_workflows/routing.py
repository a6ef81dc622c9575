"""Model-affinity routing: which GPU worker of a pool a job's models make the best place for it,
read from the pool's inventory. Pure functions: the control worker's `route_generation` local
activity decides with them, and the result is recorded in the job's history.

Order of preference (docs/routing.md): a worker holding the job's models loaded (warm), then one
of the workers that have its model files on disk when not all of them do (on_disk), else the
pool queue, where whichever GPU is free first takes it (cold).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from temporal_workflows.inventory import LoaderChoices, PoolInventory

# (loader class, loader input, file name): one model file as a graph's loader node names it.
ModelUse = tuple[str, str, str]


@dataclass(frozen=True)
class Preference:
    routing: Literal["warm", "on_disk", "cold"]
    worker: str | None
    reason: str


def job_models(prompt: dict[str, Any], inventory: PoolInventory) -> list[ModelUse]:
    """The model files the graph's loader nodes name: the inputs the pool's workers report as
    loader inputs (a sampler's `sampler_name` is not a file), with a file name as value."""
    loader_inputs: dict[str, set[str]] = {}
    for worker in inventory.reporting_workers():
        for class_type, inputs in (inventory.worker_loaders(worker) or {}).items():
            loader_inputs.setdefault(class_type, set()).update(inputs)
    return sorted(loader_values(prompt, loader_inputs))


def loader_values(
    prompt: dict[str, Any], loader_inputs: Mapping[str, Iterable[str]]
) -> set[ModelUse]:
    """The (class, input, file name) of every node of `prompt` whose class and input are among
    `loader_inputs` ({node class: loader input names}) and whose value is a file name."""
    found: set[ModelUse] = set()
    for node in prompt.values():
        if not isinstance(node, dict):
            continue
        class_type = str(node.get("class_type"))
        inputs = node.get("inputs") or {}
        for input_name in loader_inputs.get(class_type, ()):
            value = inputs.get(input_name)
            if isinstance(value, str):
                found.add((class_type, input_name, value))
    return found


def models_held(choices: LoaderChoices, models: list[ModelUse]) -> int:
    """How many of `models` these loader choices (files on disk, or models loaded) hold."""
    return sum(1 for cls, name, value in models if value in choices.get(cls, {}).get(name, ()))


def prefer_worker(inventory: PoolInventory | None, models: list[ModelUse], key: str) -> Preference:
    """The worker a job naming `models` should wait for, if any; `key` (the task id) spreads
    ties across equally good workers the same way on every replay."""
    if not models:
        return Preference("cold", None, "the graph names no model file")
    workers = inventory.reporting_workers() if inventory is not None else []
    if inventory is None or not workers:
        return Preference("cold", None, "no GPU worker reported its models")
    names = ", ".join(sorted({value for _, _, value in models}))
    loaded = {w: models_held(inventory.worker_loaded(w), models) for w in workers}
    best = max(loaded.values())
    if best > 0:
        worker = _pick([w for w, held in loaded.items() if held == best], key)
        part = "" if best == len(models) else f" ({best} of {len(models)} files)"
        return Preference("warm", worker, f"{names} loaded on {worker}{part}")
    on_disk = [
        w for w in workers if models_held(inventory.worker_loaders(w) or {}, models) == len(models)
    ]
    if on_disk and len(on_disk) < len(workers):
        worker = _pick(on_disk, key)
        return Preference("on_disk", worker, f"{names} on the disk of {worker}, not of all")
    return Preference("cold", None, f"no GPU worker has {names} loaded")


def _pick(workers: list[str], key: str) -> str:
    ordered = sorted(workers)
    return ordered[zlib.crc32(key.encode()) % len(ordered)]
