"""Model-affinity routing in tests: a workflow whose parameters pick the checkpoint and how long
the job runs, GPU workers whose emulators charge for loading a model, and the emulator's
account of loaded models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle

from manifests.registry import ManifestRegistry
from temporal_workflows.payloads import GenerationResult
from tests.support.graphs import checkpoint_graph
from tests.support.manifests import valid_registry, write_manifest_dirs

ROUTED_WORKFLOW_ID = "routed_image"
CHECKPOINTS = [f"model-{letter}.safetensors" for letter in "abcd"]

ROUTED_BASE_YAML = """
checkpoint:
  type: string
  default: model-a.safetensors
  targets: [{node: Load Checkpoint, input: ckpt_name}]
seconds:
  type: float
  default: 0.0
  min: 0.0
  max: 60.0
  description: How long the emulator's sampler runs (its one step).
  targets: [{node: Sampler, input: seconds_per_step}]
"""

ROUTED_WORKFLOWS_YAML = """
routed_image:
  workflow_file: routed_image.json
  description: A checkpoint through the emulator's sampler, for as long as asked.
  parameters: [checkpoint, seconds]
  pool: {pool}
  timeout: 120
  retries: 0
"""


def routed_registry(dest: Path, pool: str) -> ManifestRegistry:
    graph = checkpoint_graph(CHECKPOINTS[0], prefix="routed")
    manifests_dir, workflows_dir = write_manifest_dirs(
        dest,
        ROUTED_BASE_YAML,
        ROUTED_WORKFLOWS_YAML.format(pool=pool),
        {"routed_image.json": graph},
    )
    return valid_registry(manifests_dir, workflows_dir)


def models_base(dest: Path, size_bytes: int = 100_000_000) -> Path:
    """A ComfyUI base directory whose checkpoints folder holds CHECKPOINTS as sparse files of
    `size_bytes` (the emulator's load cost follows a file's size); pass it as
    --base-directory."""
    folder = dest / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for name in CHECKPOINTS:
        with (folder / name).open("wb") as f:
            f.truncate(size_bytes)
    return dest


def emulator_load_args(base: Path, seconds_per_gb: float, max_loaded: int = 1) -> list[str]:
    return [
        "--base-directory",
        str(base),
        "--emulator-load-seconds-per-gb",
        str(seconds_per_gb),
        "--emulator-max-loaded-models",
        str(max_loaded),
    ]


async def emulator_models(url: str) -> dict[str, Any]:
    """The emulator's loaded model files and its count of loads (GET /emulator/models)."""
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"{url}/emulator/models", timeout=5.0)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def post_routed(
    http: httpx.AsyncClient,
    client: Client,
    model: str,
    seconds: float = 0.0,
    worker: str | None = None,
) -> WorkflowHandle[Any, GenerationResult]:
    """POST /generate of ROUTED_WORKFLOW_ID with `model` (pinned to `worker` if given) through
    `http`, the API's client: the API routes the job's first try at submit."""
    body: dict[str, Any] = {
        "workflow_id": ROUTED_WORKFLOW_ID,
        "params": {"checkpoint": model, "seconds": seconds},
    }
    if worker is not None:
        body["options"] = {"worker": worker}
    answer = await http.post("/generate", json=body)
    assert answer.status_code == 202, answer.text
    return client.get_workflow_handle(answer.json()["task_id"], result_type=GenerationResult)
