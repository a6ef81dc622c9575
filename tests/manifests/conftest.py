"""Builders for manifest directories in a temporary folder, and the shipped directories."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from manifests.registry import DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR

FIXTURES = Path(__file__).parent / "fixtures"

SMOKE_GRAPH: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
        "_meta": {"title": "Empty Image"},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}, "_meta": {"title": "Invert"}},
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "smoke"},
        "_meta": {"title": "Save Image"},
    },
}


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


ManifestDirs = tuple[Path, Path]


@pytest.fixture
def make_dirs(tmp_path: Path) -> Callable[..., ManifestDirs]:
    """make_dirs(base, workflows, graphs={name: graph}) -> (manifests_dir, workflows_dir)."""

    def build(
        base: str | dict[str, Any],
        workflows: str | dict[str, Any],
        graphs: dict[str, Any] | None = None,
    ) -> ManifestDirs:
        manifests_dir = tmp_path / "manifests"
        workflows_dir = tmp_path / "workflows"
        manifests_dir.mkdir(exist_ok=True)
        workflows_dir.mkdir(exist_ok=True)
        write_file(manifests_dir / "base.yaml", base)
        write_file(manifests_dir / "workflows.yaml", workflows)
        for name, graph in (graphs if graphs is not None else {"smoke.json": SMOKE_GRAPH}).items():
            write_file(
                workflows_dir / name, graph if isinstance(graph, (dict, str)) else str(graph)
            )
        return manifests_dir, workflows_dir

    return build


@pytest.fixture
def shipped_copy(tmp_path: Path) -> ManifestDirs:
    """A writable copy of the repository's manifests/ (YAML only) and workflows/."""
    manifests_dir = tmp_path / "manifests"
    manifests_dir.mkdir()
    for name in ("base.yaml", "workflows.yaml"):
        shutil.copy2(DEFAULT_MANIFESTS_DIR / name, manifests_dir / name)
    workflows_dir = tmp_path / "workflows"
    shutil.copytree(DEFAULT_WORKFLOWS_DIR, workflows_dir)
    return manifests_dir, workflows_dir


def fixture_dirs(name: str) -> ManifestDirs:
    return FIXTURES / name / "manifests", FIXTURES / name / "workflows"
