"""Manifest and workflow directories for tests, written into a temporary folder: the shipped
ones, the suites' own workflows (each over a graph from tests/support/graphs.py), and the
checked-in fixtures under tests/manifests/fixtures."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from manifests.registry import DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR, ManifestRegistry
from tests.support.graphs import (
    CHECKPOINT_GRAPH,
    EMULATOR_SAMPLER_GRAPH,
    INVERT_IMAGE_GRAPH,
    SAMPLED_IMAGE_GRAPH,
    SMOKE_GRAPH,
)

ManifestDirs = tuple[Path, Path]

FIXTURES = Path(__file__).resolve().parent.parent / "manifests" / "fixtures"


def fixture_dirs(name: str) -> ManifestDirs:
    return FIXTURES / name / "manifests", FIXTURES / name / "workflows"


def write_file(path: Path, content: str | dict[str, Any]) -> None:
    """Write YAML/JSON (dicts are serialised by extension) and move the mtime forward.

    The registry compares mtimes and sizes; an explicit later mtime makes an edit visible even on
    filesystems with coarse timestamps, without sleeping.
    """
    previous = path.stat().st_mtime_ns if path.exists() else None
    if isinstance(content, dict):
        text = json.dumps(content) if path.suffix == ".json" else yaml.safe_dump(content)
    else:
        text = content
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if previous is not None:
        later = max(previous, path.stat().st_mtime_ns) + 2_000_000_000
        os.utime(path, ns=(later, later))


def write_manifest_dirs(
    dest: Path,
    base: str | dict[str, Any],
    workflows: str | dict[str, Any],
    graphs: dict[str, Any] | None = None,
) -> ManifestDirs:
    """base.yaml, workflows.yaml and the graphs ({file name: graph}, SMOKE_GRAPH as smoke.json by
    default) under `dest`; returns (manifests_dir, workflows_dir)."""
    manifests_dir = dest / "manifests"
    workflows_dir = dest / "workflows"
    manifests_dir.mkdir(parents=True, exist_ok=True)
    workflows_dir.mkdir(parents=True, exist_ok=True)
    write_file(manifests_dir / "base.yaml", base)
    write_file(manifests_dir / "workflows.yaml", workflows)
    for name, graph in (graphs if graphs is not None else {"smoke.json": SMOKE_GRAPH}).items():
        write_file(workflows_dir / name, graph if isinstance(graph, (dict, str)) else str(graph))
    return manifests_dir, workflows_dir


def copy_shipped(dest: Path) -> ManifestDirs:
    """A writable copy of the repository's manifests/ (YAML only) and workflows/."""
    manifests_dir = dest / "manifests"
    workflows_dir = dest / "workflows"
    manifests_dir.mkdir(parents=True, exist_ok=True)
    for name in ("base.yaml", "workflows.yaml"):
        shutil.copy2(DEFAULT_MANIFESTS_DIR / name, manifests_dir / name)
    shutil.copytree(DEFAULT_WORKFLOWS_DIR, workflows_dir, dirs_exist_ok=True)
    return manifests_dir, workflows_dir


def append_workflows(manifests_dir: Path, text: str) -> None:
    """Add workflow entries (YAML text) at the end of workflows.yaml."""
    with (manifests_dir / "workflows.yaml").open("a") as f:
        f.write(text)


def valid_registry(manifests_dir: Path, workflows_dir: Path) -> ManifestRegistry:
    registry = ManifestRegistry(manifests_dir, workflows_dir)
    snapshot = registry.snapshot()
    assert not snapshot.errors, [str(e) for e in snapshot.errors]
    return registry


# --- The shipped manifests plus `emulator_sampler`: a workflow whose EmulatorSampler node
# (tests/emulator) reports progress per step and takes a chosen time per step.

EMULATOR_WORKFLOW_ID = "emulator_sampler"

_EMULATOR_BASE_ADDITION = """
seconds_per_step:
  type: float
  default: 0.05
  min: 0
  max: 60
  description: Emulator only - seconds each EmulatorSampler step takes.
  targets:
    - {node: Sampler, input: seconds_per_step}
"""

_EMULATOR_WORKFLOW_ADDITION = f"""
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


def write_manifests_with_emulator_sampler(dest: Path) -> ManifestDirs:
    """Copies the shipped manifests and graphs into `dest` and adds `emulator_sampler`."""
    manifests_dir, workflows_dir = copy_shipped(dest)
    with (manifests_dir / "base.yaml").open("a") as f:
        f.write(_EMULATOR_BASE_ADDITION)
    append_workflows(manifests_dir, _EMULATOR_WORKFLOW_ADDITION)
    (workflows_dir / f"{EMULATOR_WORKFLOW_ID}.json").write_text(
        json.dumps(EMULATOR_SAMPLER_GRAPH, indent=2)
    )
    return manifests_dir, workflows_dir


PREVIEWS_WORKFLOW_ID = "emulator_previews"

# The emulator keeps ComfyUI's default `--preview-method none`, so its EmulatorSampler sends a
# preview per step only for prompts that ask for one in `extra_data` (comfyui-protocol.md §1.4,
# §3.3): `previews: true` makes the worker ask.
PREVIEWS_WORKFLOW = f"""
{PREVIEWS_WORKFLOW_ID}:
  workflow_file: {EMULATOR_WORKFLOW_ID}.json
  description: Emulator only - the sampler workflow with sampler previews on.
  parameters: [steps, seconds_per_step, width, height]
  overrides:
    steps: {{default: 10, targets: [{{node: Sampler, input: steps}}]}}
    width: {{default: 32, targets: [{{node: Empty Image, input: width}}]}}
    height: {{default: 32, targets: [{{node: Empty Image, input: height}}]}}
  timeout: 120
  previews: true
"""

IDLE_POOL_WORKFLOW_ID = "idle_pool_image"


def idle_pool_workflow(pool: str) -> str:
    """IDLE_POOL_WORKFLOW_ID, a workflow on the shipped smoke graph whose GPU pool is `pool`."""
    return (
        f"\n{IDLE_POOL_WORKFLOW_ID}:\n"
        "  workflow_file: smoke_image.json\n  description: no GPU\n"
        f"  parameters: [width]\n  pool: {pool}\n"
        "  overrides:\n    width: {targets: [{node: Empty Image, input: width}]}\n"
    )


# --- `sampled_image`: an empty image through the emulator's sampler, on a pool of the test's own.

SAMPLED_IMAGE_WORKFLOW_ID = "sampled_image"

SAMPLED_BASE_YAML = """
width:
  type: integer
  default: 16
  min: 1
  max: 100000   # more than ComfyUI's EmptyImage allows, so ComfyUI's own validation can refuse
  targets: [{node: Empty Image, input: width}]
steps:
  type: integer
  default: 2
  min: 1
  max: 10000
  targets: [{node: Sampler, input: steps}]
seconds_per_step:
  type: float
  default: 0.0
  min: 0
  max: 10
  targets: [{node: Sampler, input: seconds_per_step}]
filename_prefix:
  type: string
  default: gen
  max_length: 100
  targets: [{node: Save Image, input: filename_prefix}]
"""

SAMPLED_WORKFLOWS_YAML = """
sampled_image:
  workflow_file: sampled_image.json
  description: An empty image through the emulator's sampler, saved.
  parameters: [width, steps, seconds_per_step, filename_prefix]
  pool: {pool}
  timeout: 60
  retries: 2
"""

# The fault suite's stall limit: ComfyUI silent for 1.5 s while running the prompt means a hung
# node.
STALL_TIMEOUT = 1.5


def write_sampled_image_manifests(
    base_dir: Path, pool: str, *, stall_timeout: float | None = None
) -> ManifestDirs:
    """`sampled_image` on `pool` (with a stall limit if given) under `base_dir`."""
    workflows = SAMPLED_WORKFLOWS_YAML.format(pool=pool)
    if stall_timeout is not None:
        workflows += f"  stall_timeout: {stall_timeout}\n"
    return write_manifest_dirs(
        base_dir, SAMPLED_BASE_YAML, workflows, {"sampled_image.json": SAMPLED_IMAGE_GRAPH}
    )


def write_fault_manifests(base_dir: Path, pool: str) -> ManifestDirs:
    """`sampled_image` with the fault suite's STALL_TIMEOUT."""
    return write_sampled_image_manifests(base_dir, pool, stall_timeout=STALL_TIMEOUT)


# --- `invert_image`: an image input (LoadImage) inverted and saved.

INVERT_WORKFLOW_ID = "invert_image"

INVERT_BASE_YAML = """
image:
  type: image
  required: true
  description: The image to invert.
  targets: [{node: Load Image, input: image}]
"""

INVERT_WORKFLOWS_YAML = f"""
{INVERT_WORKFLOW_ID}:
  workflow_file: {INVERT_WORKFLOW_ID}.json
  description: Inverts the colours of the given image.
  parameters: [image]
  timeout: 60
  retries: 0
"""


def write_image_manifests(
    dest: Path, *, base_yaml: str = INVERT_BASE_YAML, workflows_yaml: str = INVERT_WORKFLOWS_YAML
) -> ManifestRegistry:
    """`invert_image` under `dest`; returns its (valid) registry."""
    return valid_registry(
        *write_manifest_dirs(
            dest, base_yaml, workflows_yaml, {f"{INVERT_WORKFLOW_ID}.json": INVERT_IMAGE_GRAPH}
        )
    )


def emulator_sampler_registry(dest: Path, extra_workflows: str = "") -> ManifestRegistry:
    """The shipped manifests plus `emulator_sampler` and `extra_workflows` (YAML entries)."""
    manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(dest)
    append_workflows(manifests_dir, extra_workflows)
    return valid_registry(manifests_dir, workflows_dir)


def idle_pool_registry(dest: Path, pool: str) -> ManifestRegistry:
    """emulator_sampler_registry plus IDLE_POOL_WORKFLOW_ID on `pool`, which no worker polls: a
    job waits for a GPU until it is cancelled."""
    return emulator_sampler_registry(dest, idle_pool_workflow(pool))


# --- `load_checkpoint`: a checkpoint parameter (a file name, or a file the GPU worker downloads).

CHECKPOINT_WORKFLOW_ID = "load_checkpoint"

CHECKPOINT_BASE_YAML = """
checkpoint:
  type: string
  required: true
  description: The checkpoint to load, by name or URL.
  targets: [{node: Load Checkpoint, input: ckpt_name}]
"""

CHECKPOINT_WORKFLOWS_YAML = f"""
{CHECKPOINT_WORKFLOW_ID}:
  workflow_file: {CHECKPOINT_WORKFLOW_ID}.json
  description: Loads a checkpoint and shows which file it read.
  parameters: [checkpoint]
  timeout: 60
  retries: 2
"""


def write_checkpoint_manifests(dest: Path) -> ManifestRegistry:
    """`load_checkpoint` under `dest`; returns its (valid) registry."""
    return valid_registry(
        *write_manifest_dirs(
            dest,
            CHECKPOINT_BASE_YAML,
            CHECKPOINT_WORKFLOWS_YAML,
            {f"{CHECKPOINT_WORKFLOW_ID}.json": CHECKPOINT_GRAPH},
        )
    )
