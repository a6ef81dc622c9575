"""Loads a manifests directory (base.yaml, workflows.yaml, loras.yaml) and its workflows directory
(graphs, including experimental `exp_*.json` graphs that need no workflows.yaml entry).

Loading never raises for bad content: every problem becomes a `ManifestError` naming the file, the
workflow and the key, and a broken workflow does not stop the others from loading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests.definitions import LoraEntry, WorkflowManifest
from manifests.errors import ManifestError
from manifests.loading.entries import load_entry, load_experimental
from manifests.loading.graphs import graph_path
from manifests.loading.loras import load_loras
from manifests.loading.parameters import load_base
from manifests.loading.yaml_files import (
    BASE_FILE,
    LORAS_FILE,
    WORKFLOWS_FILE,
    display_path,
    read_yaml,
)

# The original service runs workflows/exp_<name>.json as workflow `exp_<name>` without an entry.
EXPERIMENTAL_PREFIX = "exp_"


@dataclass
class LoadResult:
    """Everything one load produced; the registry combines it with its last good state."""

    revision: str
    workflows: dict[str, WorkflowManifest]
    errors: list[ManifestError]
    # Workflow ids listed in workflows.yaml that failed to load.
    failed: set[str] = field(default_factory=set)
    # True when base.yaml or workflows.yaml as a whole could not be read: trust no workflow.
    unreadable: bool = False
    # Files outside the watched directories' top level that this load read (to watch them too).
    extra_files: list[Path] = field(default_factory=list)
    # loras.yaml's LoRA catalogue, by file name.
    loras: dict[str, LoraEntry] = field(default_factory=dict)


def content_revision(files: Iterable[tuple[str, Path]]) -> str:
    """Hash over (name, bytes) of the given files; missing files count as absent.

    Names are relative to their directory, so two hosts holding the same files agree on it.
    """
    digest = hashlib.sha256()
    for name, path in sorted(set(files)):
        digest.update(name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def load_manifests(
    manifests_dir: Path, workflows_dir: Path, *, experimental: bool = True
) -> LoadResult:
    """Load every workflow; problems are returned as errors, never raised.

    `experimental`: also serve each `exp_*.json` graph that no workflows.yaml entry names.
    """
    base_path = manifests_dir / BASE_FILE
    workflows_path = manifests_dir / WORKFLOWS_FILE
    loras_path = manifests_dir / LORAS_FILE
    errors: list[ManifestError] = []
    for directory in (manifests_dir, workflows_dir):
        if not directory.is_dir():
            errors.append(ManifestError(display_path(directory), None, None, "directory not found"))
    base = load_base(base_path)
    errors.extend(base.errors)
    loras = load_loras(loras_path)
    errors.extend(loras.errors)
    shown = display_path(workflows_path)
    data, problem = read_yaml(workflows_path)
    if problem is None and data is not None and not isinstance(data, dict):
        problem = "must map workflow ids to workflow entries"
    if problem is not None:
        errors.append(ManifestError(shown, None, None, problem))
    graph_files = sorted(workflows_dir.glob("*.json")) if workflows_dir.is_dir() else []
    entries: dict[Any, Any] = data if isinstance(data, dict) else {}
    extra: list[Path] = []
    for raw in entries.values():
        if isinstance(raw, dict) and isinstance(raw.get("workflow_file"), str):
            # Graphs in subfolders are not in the top-level listing the registry watches.
            path = graph_path(raw["workflow_file"], workflows_dir)
            if path is not None and len(Path(raw["workflow_file"]).parts) > 1:
                extra.append(path)
    revision = content_revision(
        [
            (f"manifests/{BASE_FILE}", base_path),
            (f"manifests/{WORKFLOWS_FILE}", workflows_path),
            (f"manifests/{LORAS_FILE}", loras_path),
            *((f"workflows/{p.relative_to(workflows_dir)}", p) for p in [*graph_files, *extra]),
        ]
    )
    result = LoadResult(
        revision=revision, workflows={}, errors=errors, extra_files=extra, loras=loras.entries
    )
    if problem is not None or base.unreadable or loras.unreadable:
        result.unreadable = True
        return result
    for workflow_id, raw in entries.items():
        manifest, entry_errors = load_entry(
            str(workflow_id),
            raw,
            file=shown,
            workflows_dir=workflows_dir,
            base=base,
            loras=loras.entries,
            revision=revision,
        )
        errors.extend(entry_errors)
        if manifest is None:
            result.failed.add(str(workflow_id))
        else:
            result.workflows[manifest.id] = manifest
    if experimental:
        # A graph that an entry names, or whose id an entry takes, has its manifest entry.
        listed = {str(workflow_id) for workflow_id in entries}
        used = {
            graph_path(raw["workflow_file"], workflows_dir)
            for raw in entries.values()
            if isinstance(raw, dict) and isinstance(raw.get("workflow_file"), str)
        }
        for path in graph_files:
            if not path.stem.startswith(EXPERIMENTAL_PREFIX) or path.stem in listed:
                continue
            if path in used:
                continue
            manifest, entry_errors = load_experimental(
                path, base=base, loras=loras.entries, revision=revision
            )
            errors.extend(entry_errors)
            if manifest is None:
                result.failed.add(path.stem)
            else:
                result.workflows[manifest.id] = manifest
    return result
