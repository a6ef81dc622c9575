"""Manifests for tests and the benchmark: the shipped ones plus `emulator_sampler`, a workflow whose
EmulatorSampler node (tests/emulator) reports progress per step and takes a chosen time per step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from manifests.registry import DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR

EMULATOR_WORKFLOW_ID = "emulator_sampler"

_GRAPH = {
    "1": {
        "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0},
        "class_type": "EmptyImage",
        "_meta": {"title": "Empty Image"},
    },
    "2": {
        "inputs": {"images": ["1", 0], "steps": 10, "seconds_per_step": 0.05},
        "class_type": "EmulatorSampler",
        "_meta": {"title": "Sampler"},
    },
    "3": {
        "inputs": {"images": ["2", 0], "filename_prefix": "sampled"},
        "class_type": "SaveImage",
        "_meta": {"title": "Save Image"},
    },
}

_BASE_ADDITION = """
seconds_per_step:
  type: float
  default: 0.05
  min: 0
  max: 60
  description: Emulator only - seconds each EmulatorSampler step takes.
  targets:
    - {node: Sampler, input: seconds_per_step}
"""

_WORKFLOW_ADDITION = f"""
{EMULATOR_WORKFLOW_ID}:
  workflow_file: {EMULATOR_WORKFLOW_ID}.json
  description: Emulator only - a sampler that reports progress at every step.
  parameters: [steps, seconds_per_step, width, height]
  overrides:
    steps: {{default: 10, targets: [{{node: Sampler, input: steps}}]}}
    width: {{default: 32, targets: [{{node: Empty Image, input: width}}]}}
    height: {{default: 32, targets: [{{node: Empty Image, input: height}}]}}
  timeout: 120
"""


def write_manifests_with_emulator_sampler(dest: Path) -> tuple[Path, Path]:
    """Copies the shipped manifests and graphs into `dest` and adds `emulator_sampler`.

    Returns (manifests_dir, workflows_dir)."""
    manifests_dir = dest / "manifests"
    workflows_dir = dest / "workflows"
    manifests_dir.mkdir(parents=True, exist_ok=True)
    for name in ("base.yaml", "workflows.yaml"):
        shutil.copy(DEFAULT_MANIFESTS_DIR / name, manifests_dir / name)
    shutil.copytree(DEFAULT_WORKFLOWS_DIR, workflows_dir, dirs_exist_ok=True)
    with (manifests_dir / "base.yaml").open("a") as f:
        f.write(_BASE_ADDITION)
    with (manifests_dir / "workflows.yaml").open("a") as f:
        f.write(_WORKFLOW_ADDITION)
    (workflows_dir / f"{EMULATOR_WORKFLOW_ID}.json").write_text(json.dumps(_GRAPH, indent=2))
    return manifests_dir, workflows_dir
