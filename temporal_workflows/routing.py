"""Model-affinity routing: which GPU worker of a pool a job's models make the best place for it,
read from the pool's inventory. Pure functions: the control worker's `route_generation` local
activity decides with them, and the result is recorded in the job's history.

Order of preference (docs/routing.md): a worker holding the job's models loaded, or taking the
jobs before it that name the same models (warm), then one of the workers that have its model
files on disk when not all of them do (on_disk), else an idle worker or the one given the fewest
model sets, which loads them (cold). A job that waited its bound for a worker goes to the pool
queue, where whichever GPU is free first takes it, when another GPU idles (`after_wait`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
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


# Model sets the router has sent to a worker lately, {model set: (worker, when the last job of it
# was sent there)}: the jobs of a backlog routed before any model is loaded follow the first job
# of their set (activities/generation/routing.py keeps them).
Claims = Mapping[frozenset[ModelUse], tuple[str, datetime]]


def prefer_worker(
    inventory: PoolInventory | None,
    models: list[ModelUse],
    key: str,
    claims: Claims | None = None,
) -> Preference:
    """The worker a job naming `models` should wait for, if any; `key` (the task id) spreads
    ties across equally good workers the same way on every replay."""
    if not models:
        return Preference("cold", None, "the graph names no model file")
    workers = inventory.reporting_workers() if inventory is not None else []
    if inventory is None or not workers:
        return Preference("cold", None, "no GPU worker reported its models")
    if len(workers) == 1:
        return Preference("cold", None, "the pool has one GPU worker")
    names = ", ".join(sorted({value for _, _, value in models}))
    idle = set(inventory.idle_workers())
    loaded = {w: models_held(inventory.worker_loaded(w), models) for w in workers}
    best = max(loaded.values())
    if best > 0:
        worker = _pick([w for w, held in loaded.items() if held == best], key, idle)
        part = "" if best == len(models) else f" ({best} of {len(models)} files)"
        return Preference("warm", worker, f"{names} loaded on {worker}{part}")
    on_disk = [
        w for w in workers if models_held(inventory.worker_loaders(w) or {}, models) == len(models)
    ]
    if on_disk and len(on_disk) < len(workers):
        worker = _pick(on_disk, key, idle)
        return Preference("on_disk", worker, f"{names} on the disk of {worker}, not of all")
    claims = claims or {}
    claimed = claims.get(frozenset(models))
    if claimed is not None and claimed[0] in workers:
        # Busy or not: after the wait, an idle GPU may take it (after_wait).
        worker = claimed[0]
        return Preference("warm", worker, f"{names} goes to {worker} with the jobs before it")
    # Nobody holds them: the worker that takes them loads them, and the next jobs follow it. The
    # one with the fewest model sets still to run (given since it last reported idle), an idle
    # one among those.
    pending = {w: _pending_sets(inventory, w, claims) for w in workers}
    fewest = min(pending.values())
    worker = _pick([w for w in workers if pending[w] == fewest], key, idle)
    why = "idle" if worker in idle else f"{fewest} model set(s) to run"
    return Preference(
        "cold", worker, f"no GPU worker has {names} loaded; {worker} ({why}) takes it"
    )


def _pending_sets(inventory: PoolInventory, worker: str, claims: Claims) -> int:
    """The model sets given to `worker` that it may not have run yet: all of them, but those
    given before it last reported its GPU idle."""
    entry = inventory.workers[worker]
    done_before = entry.reported_at if entry.idle else None
    return sum(
        1
        for owner, at in claims.values()
        if owner == worker and (done_before is None or at > done_before)
    )


def after_wait(
    inventory: PoolInventory | None,
    worker: str,
    waited_seconds: float,
    models: list[ModelUse],
    key: str,
) -> Preference:
    """A job naming `models`, routed to `worker`, was not taken within `waited_seconds`. While
    another GPU of the pool idles with the files on its disk: the pool queue, where any GPU with
    room takes it, or that idle GPU's own queue when not every worker has the files. Else it keeps
    waiting for `worker`, which will run it sooner than a cold GPU would."""
    waited = f"{worker} did not take it within {waited_seconds:g} s"
    workers = inventory.reporting_workers() if inventory is not None else []
    if inventory is None or worker not in workers:
        return Preference("cold", None, f"{waited}; it no longer reports")
    having = [
        w for w in workers if models_held(inventory.worker_loaders(w) or {}, models) == len(models)
    ]
    idle = [w for w in inventory.idle_workers() if w != worker and w in having]
    if not idle:
        return Preference("warm", worker, f"{waited}; no GPU idles, so it still waits for {worker}")
    if len(having) == len(workers):
        return Preference("cold", None, f"{waited}; {', '.join(idle)} idle")
    other = _pick(idle, key)
    return Preference("cold", other, f"{waited}; {other} idle, with its files on disk")


def _pick(workers: list[str], key: str, idle: set[str] | None = None) -> str:
    """One of `workers`, an idle one if any, spread by `key`."""
    ordered = sorted(w for w in workers if w in idle) if idle else []
    ordered = ordered or sorted(workers)
    return ordered[zlib.crc32(key.encode()) % len(ordered)]
