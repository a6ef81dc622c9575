"""Fixtures that write manifest directories into the test's temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.manifests import ManifestDirs, copy_shipped, write_manifest_dirs


@pytest.fixture
def make_dirs(tmp_path: Path) -> Callable[..., ManifestDirs]:
    """make_dirs(base, workflows, graphs={name: graph}) -> (manifests_dir, workflows_dir)."""

    def build(
        base: str | dict[str, Any],
        workflows: str | dict[str, Any],
        graphs: dict[str, Any] | None = None,
    ) -> ManifestDirs:
        return write_manifest_dirs(tmp_path, base, workflows, graphs)

    return build


@pytest.fixture
def shipped_copy(tmp_path: Path) -> ManifestDirs:
    """A writable copy of the repository's manifests/ (YAML only) and workflows/."""
    return copy_shipped(tmp_path)
