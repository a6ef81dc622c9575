"""Model inventories for tests: emulator model folders with given files, a workflow whose
parameters pick a checkpoint and a LoRA, a LoRA catalogue, and reading a pool's inventory."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client

from activities.workers.inventory import query_inventory
from manifests.registry import ManifestRegistry
from temporal_workflows.inventory import PoolInventory
from tests.support.graphs import model_graph
from tests.support.manifests import valid_registry, write_file, write_manifest_dirs
from tests.support.waiting import wait_for

MODEL_WORKFLOW_ID = "model_image"
IDLE_MODEL_WORKFLOW_ID = "model_image_idle"

MODEL_BASE_YAML = """
checkpoint:
  type: string
  default: common.safetensors
  targets: [{node: Checkpoint, input: ckpt_name}]
lora:
  type: string
  default: "None"
  targets: [{node: LoRA, input: lora_name}]
  bypass: {node: LoRA, when: ["None"], outputs: {0: model}}
"""

MODEL_WORKFLOWS_YAML = """
model_image:
  workflow_file: model_image.json
  description: A checkpoint and a LoRA through the emulator's sampler.
  parameters: [checkpoint, lora]
  pool: {pool}
  timeout: 60
  retries: 0
model_image_idle:
  workflow_file: model_image.json
  description: The same on a pool no GPU worker serves.
  parameters: [checkpoint, lora]
  pool: {idle_pool}
"""

LORAS_YAML = """
style-a.safetensors:
  description: Style A
  prefix: "style a"
  examples: [a.png]
style-b.safetensors:
  description: Style B
  suffix: "in style b"
style-c.safetensors:
  description: On no GPU
"""


def model_registry(dest: Path, pool: str, idle_pool: str) -> ManifestRegistry:
    """MODEL_WORKFLOW_ID on `pool` and IDLE_MODEL_WORKFLOW_ID on `idle_pool`, with LORAS_YAML."""
    manifests_dir, workflows_dir = write_manifest_dirs(
        dest,
        MODEL_BASE_YAML,
        MODEL_WORKFLOWS_YAML.format(pool=pool, idle_pool=idle_pool),
        {"model_image.json": model_graph()},
    )
    write_file(manifests_dir / "loras.yaml", LORAS_YAML)
    return valid_registry(manifests_dir, workflows_dir)


def comfyui_base(dest: Path, files: dict[str, list[str]]) -> Path:
    """A ComfyUI base directory whose models/<folder> hold empty files of these names
    ({"checkpoints": ["a.safetensors"], ...}); pass it as --base-directory."""
    for folder, names in files.items():
        add_model_file(dest, folder, *names)
    return dest


def add_model_file(base: Path, folder: str, *names: str) -> None:
    for name in names:
        path = base / "models" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


async def wait_for_inventory(
    client: Client, pool: str, holds: str, what: str, timeout: float = 30.0
) -> PoolInventory:
    """The pool's inventory (read as the API reads it) once some worker's ckpt_name choices
    include `holds` (or, for holds="!name", once none does)."""

    async def read() -> PoolInventory | None:
        inventory = await query_inventory(client, pool)
        if inventory is None:
            return None
        names = inventory.choices("CheckpointLoaderSimple", "ckpt_name") or set()
        wanted = holds[1:] not in names if holds.startswith("!") else holds in names
        return inventory if wanted else None

    return await wait_for(read, what, timeout)
