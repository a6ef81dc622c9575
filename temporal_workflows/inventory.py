"""What a pool's GPU workers have: the choices each one's ComfyUI offers for its model loader
inputs (the files on its disk) and the models it holds loaded, as the workers report them to
PoolInventoryWorkflow and the API and the routing step read them back.

Pure models and functions (pydantic only): the workflow, the GPU worker and the API share them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

# {node class: {loader input: choices}}, e.g. {"CheckpointLoaderSimple": {"ckpt_name": [...]}}.
LoaderChoices = dict[str, dict[str, list[str]]]

# A GPU worker reports itself idle once its GPU has held no job this long: a GPU between two jobs
# of a backlog is not idle.
IDLE_AFTER_SECONDS = 0.5


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


def inventory_digest(loaders: LoaderChoices) -> str:
    """A short fingerprint of an inventory: equal inventories of different workers share it."""
    canonical = json.dumps(loaders, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class InventoryReport(_Payload):
    """Signal from a GPU worker: its ComfyUI's loader choices, or that they are unchanged."""

    worker: str
    digest: str = Field(description="inventory_digest of the worker's current loader choices.")
    loaders: LoaderChoices | None = Field(
        default=None,
        description="The choices; None when they are those of the worker's last full report "
        "(`digest` unchanged), so a keep-alive costs a few bytes of history.",
    )
    valid_for_seconds: float = Field(
        gt=0, description="Drop the worker when it has not reported again within this time."
    )
    loaded: LoaderChoices | None = Field(
        default=None,
        description="The models its ComfyUI holds loaded now, as the loader inputs that named "
        "them (docs/comfyui-protocol.md §4.12); None from a worker that does not tell.",
    )
    idle: bool | None = Field(
        default=None,
        description="Whether its GPU holds no job (for IDLE_AFTER_SECONDS at least): routing "
        "sends a job waiting for a busy worker to the pool queue only while some GPU idles. "
        "None from a worker that does not tell (counted as idle).",
    )


class InventoryWithdrawal(_Payload):
    """Signal from a GPU worker that stops taking jobs (stopping, or its ComfyUI is unhealthy)."""

    worker: str
    reason: str = ""


class WorkerInventory(_Payload):
    """One worker's entry: which inventory it has, and until when it counts."""

    digest: str
    reported_at: datetime
    expires_at: datetime
    loaded: LoaderChoices = Field(default_factory=dict)
    idle: bool | None = None


class PoolInventory(_Payload):
    """The state of PoolInventoryWorkflow and the answer of its query: the workers heard from,
    and their inventories stored once per digest (a fleet of identical GPUs holds one copy)."""

    pool: str
    workers: dict[str, WorkerInventory] = Field(default_factory=dict)
    inventories: dict[str, LoaderChoices] = Field(default_factory=dict)

    def worker_loaders(self, worker: str) -> LoaderChoices | None:
        """The loader choices of `worker`, None when it has not (fully) reported."""
        entry = self.workers.get(worker)
        return self.inventories.get(entry.digest) if entry is not None else None

    def worker_loaded(self, worker: str) -> LoaderChoices:
        """The models `worker` holds loaded, as far as it reported ({} when unknown)."""
        entry = self.workers.get(worker)
        return entry.loaded if entry is not None else {}

    def idle_workers(self) -> list[str]:
        """Reporting workers whose GPU holds no job, or that do not tell."""
        return [w for w in self.reporting_workers() if self.workers[w].idle is not False]

    def reporting_workers(self) -> list[str]:
        """Workers whose inventory is known."""
        return sorted(w for w in self.workers if self.worker_loaders(w) is not None)

    def choices(
        self, class_type: str, input_name: str, *, worker: str | None = None
    ) -> set[str] | None:
        """The choices of one loader input on any reporting worker (or on `worker` alone); None
        when no such worker reports this loader input, so nothing can be said about it."""
        found: set[str] | None = None
        names = [worker] if worker is not None else list(self.workers)
        for name in names:
            loaders = self.worker_loaders(name)
            if loaders is None or input_name not in loaders.get(class_type, {}):
                continue
            found = (found or set()) | set(loaders[class_type][input_name])
        return found

    def choices_of_inputs(self, matches: Callable[[str], object]) -> set[str] | None:
        """Union of the choices of every loader input whose name `matches`, on any node class
        (e.g. `lora_name`: every LoRA file); None when no worker reports such an input."""
        found: set[str] | None = None
        for name in self.workers:
            for inputs in (self.worker_loaders(name) or {}).values():
                for input_name, values in inputs.items():
                    if matches(input_name):
                        found = (found or set()) | set(values)
        return found
