"""The live manifest registry: loads workflows, notices file changes per request, keeps serving
the last good version of anything a bad edit breaks, and reports what is wrong.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from manifests.definitions import LoraEntry, WorkflowManifest
from manifests.errors import ManifestError, UnknownWorkflow
from manifests.loading import load_manifests
from manifests.render import RenderedPrompt, render_prompt
from manifests.validation import validate_params

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFESTS_DIR = REPO_ROOT / "manifests"
DEFAULT_WORKFLOWS_DIR = REPO_ROOT / "workflows"

_Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass(frozen=True)
class RegistrySnapshot:
    """What the registry serves right now.

    `stale` names workflows whose files are currently broken and which keep serving the last
    version that loaded; their problems are in `errors`.
    """

    revision: str
    workflows: Mapping[str, WorkflowManifest]
    errors: list[ManifestError]
    stale: frozenset[str] = field(default_factory=frozenset)
    # loras.yaml's catalogue by LoRA file name (the last one that loaded, like the workflows).
    loras: Mapping[str, LoraEntry] = field(default_factory=lambda: MappingProxyType({}))


def _stat_entry(path: Path) -> tuple[str, int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (str(path), -1, -1, -1)
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


class ManifestRegistry:
    """Reads manifests and graphs from two directories and reloads them when they change.

    The directories default to the bundled manifests/ and workflows/; a process's settings pass
    its own (and whether exp_*.json graphs without an entry are served).
    `snapshot()` costs a directory listing and a few `stat` calls, so it is fine to call it per
    request. Thread-safe.
    """

    def __init__(
        self,
        manifests_dir: Path | None = None,
        workflows_dir: Path | None = None,
        *,
        experimental: bool = True,
    ) -> None:
        self.manifests_dir = Path(manifests_dir or DEFAULT_MANIFESTS_DIR)
        self.workflows_dir = Path(workflows_dir or DEFAULT_WORKFLOWS_DIR)
        self.experimental = experimental
        self._lock = threading.Lock()
        self._fingerprint: _Fingerprint | None = None
        self._extra_files: list[Path] = []
        self._snapshot = RegistrySnapshot(revision="", workflows=MappingProxyType({}), errors=[])

    def _current_fingerprint(self) -> _Fingerprint:
        entries: list[tuple[str, int, int, int]] = []
        for directory in (self.manifests_dir, self.workflows_dir):
            try:
                with os.scandir(directory) as listing:
                    for entry in listing:
                        if entry.is_file():
                            st = entry.stat()
                            entries.append((entry.path, st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                entries.append((str(directory), -1, -1, -1))
        entries.extend(_stat_entry(p) for p in self._extra_files)
        return tuple(sorted(entries))

    def snapshot(self) -> RegistrySnapshot:
        """The current workflows, reloaded first if a watched file changed. Never raises."""
        fingerprint = self._current_fingerprint()
        if fingerprint == self._fingerprint:
            return self._snapshot
        with self._lock:
            if self._current_fingerprint() != self._fingerprint:
                self._reload_and_remember()
            return self._snapshot

    def reload(self) -> RegistrySnapshot:
        """Force a reload now, whatever the files' timestamps say."""
        with self._lock:
            self._reload_and_remember()
            return self._snapshot

    def _reload_and_remember(self) -> None:
        # The fingerprint is taken before reading, so a file that changes while it is being read
        # (an editor still writing) differs from it and is read again on the next call.
        before = self._current_fingerprint()
        watched = self._extra_files
        self._reload()
        # A load that changed which extra files are watched must re-check them on the next call.
        self._fingerprint = before if self._extra_files == watched else None

    def _reload(self) -> None:
        try:
            result = load_manifests(
                self.manifests_dir, self.workflows_dir, experimental=self.experimental
            )
        except Exception:  # a loader bug must not take the service down either
            logger.exception("loading manifests failed; keeping the previous workflows")
            last = self._snapshot
            error = ManifestError(
                str(self.manifests_dir), None, None, "internal error while loading"
            )
            self._snapshot = RegistrySnapshot(
                last.revision, last.workflows, [error], frozenset(last.workflows), last.loras
            )
            return
        previous = dict(self._snapshot.workflows)
        if result.unreadable:
            workflows = previous
            stale = set(previous)
            loras = self._snapshot.loras
        else:
            workflows = dict(result.workflows)
            loras = MappingProxyType(dict(result.loras))
            stale = set()
            for workflow_id in sorted(result.failed):
                if workflow_id in previous:
                    workflows[workflow_id] = previous[workflow_id]
                    stale.add(workflow_id)
        self._extra_files = result.extra_files
        old_errors = {str(e) for e in self._snapshot.errors}
        for error in result.errors:
            if str(error) not in old_errors:
                logger.error("manifest error: %s", error)
        for workflow_id in sorted(stale):
            logger.warning(
                "workflow '%s' is broken; still serving its last good version", workflow_id
            )
        if not result.errors and self._snapshot.errors:
            logger.info("manifests load cleanly again (revision %s)", result.revision)
        self._snapshot = RegistrySnapshot(
            revision=result.revision,
            workflows=MappingProxyType(workflows),
            errors=list(result.errors),
            stale=frozenset(stale),
            loras=loras,
        )
        logger.info("manifests revision %s: %d workflow(s)", result.revision, len(workflows))

    def get(self, workflow_id: str) -> WorkflowManifest:
        """The workflow's manifest; raises UnknownWorkflow."""
        snapshot = self.snapshot()
        try:
            return snapshot.workflows[workflow_id]
        except KeyError:
            raise UnknownWorkflow(workflow_id, list(snapshot.workflows)) from None

    def validate(self, workflow_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Strictly validated params, defaults filled; raises UnknownWorkflow or ParamsInvalid."""
        return validate_params(self.get(workflow_id), params)

    def render(
        self, workflow_id: str, params: Mapping[str, Any], *, rng: random.Random | None = None
    ) -> RenderedPrompt:
        """Render the workflow's graph; the result records the revision the manifest came from."""
        manifest = self.get(workflow_id)
        return render_prompt(manifest, params, revision=manifest.revision, rng=rng)
