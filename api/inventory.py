"""What the API knows of the model files on a pool's GPUs: PoolInventoryWorkflow's answer, cached
for half a second (the cache its routing shares), and the check of model names at submit (a miss
is a 422 with the closest names). The API never asks ComfyUI; it reads what the GPU workers
reported through Temporal.

While no worker of the pool has reported (or the inventory cannot be read), names are accepted
and ComfyUI decides, as before there was an inventory.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from temporalio.client import Client

from activities.workers.inventory import InventoryCache
from api.errors import ApiError
from manifests.definitions import WorkflowManifest
from manifests.loading.loras import LORA_NAME_INPUT
from manifests.model_inputs import is_model_reference
from manifests.render import is_link
from manifests.validation import same_value
from temporal_workflows.inventory import PoolInventory

# How many near names a refusal suggests.
SUGGESTIONS = 3


async def pool_inventory(request: Request, pool: str) -> PoolInventory | None:
    """The cached inventory of `pool` for a route; None without a Temporal connection."""
    client: Client | None = getattr(request.app.state, "temporal", None)
    cache: InventoryCache = request.app.state.inventory
    return await cache.get(client, pool) if client is not None else None


async def check_model_names_now(
    request: Request,
    manifest: WorkflowManifest,
    params: Mapping[str, Any],
    *,
    worker: str | None = None,
) -> None:
    """check_model_names against the pool's cached inventory, for a route."""
    inventory = await pool_inventory(request, manifest.pool)
    check_model_names(manifest, params, inventory, worker=worker)


@dataclass(frozen=True)
class LoaderTarget:
    """A model loader input a parameter's value reaches: directly, or through the primitive
    node a `map_to` parameter sets."""

    node_id: str
    class_type: str
    input: str


def loader_targets(manifest: WorkflowManifest) -> dict[str, list[LoaderTarget]]:
    """Every graph input each parameter's value reaches; the inventory tells which of them are
    model loader inputs (it knows only those)."""
    graph = manifest.template
    targets: dict[str, list[LoaderTarget]] = {}
    for name, refs in manifest.bindings.items():
        found: list[LoaderTarget] = []
        for ref in refs:
            node = graph.get(ref.node_id)
            if node is None:
                continue
            found.append(LoaderTarget(ref.node_id, node["class_type"], ref.input))
            for consumer_id, consumer in graph.items():
                for input_name, value in consumer.get("inputs", {}).items():
                    if is_link(value) and value[0] == ref.node_id:
                        found.append(LoaderTarget(consumer_id, consumer["class_type"], input_name))
        targets[name] = found
    return targets


def choices_from_gpus(
    manifest: WorkflowManifest, inventory: PoolInventory | None
) -> dict[str, list[str]]:
    """For each parameter bound to a model loader input: the names some GPU of the pool has."""
    if inventory is None:
        return {}
    out: dict[str, list[str]] = {}
    for name, targets in loader_targets(manifest).items():
        for target in targets:
            choices = inventory.choices(target.class_type, target.input)
            if choices is not None:
                out[name] = sorted(choices | set(out.get(name, [])))
    return out


@dataclass(frozen=True)
class ModelMiss:
    param: str
    message: str
    closest: list[str]


class ModelNotFound(ApiError):
    """Parameters naming model files that no GPU worker of the pool (or the pinned one) has."""

    status_code = 422
    error_type = "model_not_found"

    def __init__(self, misses: list[ModelMiss]) -> None:
        super().__init__("; ".join(f"{m.param}: {m.message}" for m in misses))
        self.misses = misses

    def detail(self) -> Any:
        return [
            {
                "loc": ["body", "params", m.param],
                "msg": m.message,
                "type": self.error_type,
                "ctx": {"closest": m.closest},
            }
            for m in self.misses
        ]


def check_model_names(
    manifest: WorkflowManifest,
    params: Mapping[str, Any],
    inventory: PoolInventory | None,
    *,
    worker: str | None = None,
) -> None:
    """Raise ModelNotFound when a parameter bound to a loader input names a file no reporting
    GPU worker of the pool has (with `worker`: that worker, if it has reported). Loader inputs
    nobody reports, nodes the request bypasses, and "None" for a LoRA are left to ComfyUI."""
    if inventory is None:
        return
    if worker is not None and inventory.worker_loaders(worker) is None:
        worker = None  # not reported (yet): the pool's names are the best guide
    bypassed = {
        bypass.node_id
        for name, bypass in manifest.bypasses.items()
        if name in params and any(same_value(params[name], v) for v in bypass.when)
    }
    misses: list[ModelMiss] = []
    for name, targets in loader_targets(manifest).items():
        value = params.get(name)
        if not isinstance(value, str) or is_model_reference(value):
            continue  # a file the GPU worker downloads is on no disk yet (docs/models.md)
        for target in targets:
            if target.node_id in bypassed:
                continue
            if LORA_NAME_INPUT.fullmatch(target.input) and value.strip().lower() in ("", "none"):
                continue  # no LoRA, as loras.yaml prompts read it (manifests/render.py)
            choices = inventory.choices(target.class_type, target.input, worker=worker)
            if choices is None or value in choices:
                continue
            misses.append(_miss(name, value, target, choices, manifest, worker))
            break
    if misses:
        raise ModelNotFound(misses)


def _miss(
    param: str,
    value: str,
    target: LoaderTarget,
    choices: set[str],
    manifest: WorkflowManifest,
    worker: str | None,
) -> ModelMiss:
    closest = difflib.get_close_matches(value, sorted(choices), n=SUGGESTIONS, cutoff=0.4)
    where = f"GPU worker '{worker}'" if worker else f"any GPU worker of pool '{manifest.pool}'"
    message = f"'{value}' is not on {where} ({target.class_type} {target.input})"
    if closest:
        message += "; closest: " + ", ".join(closest)
    elif choices:
        message += f"; it has {len(choices)} other name(s): GET /workflows/{manifest.id}"
    else:
        message += "; it has none"
    return ModelMiss(param, message, closest)
