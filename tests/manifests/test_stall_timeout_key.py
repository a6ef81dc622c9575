"""The optional `stall_timeout` key of a workflow entry: unset by default, a positive number of
seconds, carried into the manifest (and from there to the GPU worker's ComfyUI driver)."""

from __future__ import annotations

from collections.abc import Callable

from manifests.loading import load_manifests
from tests.support.manifests import ManifestDirs

BASE = {"width": {"type": "integer", "default": 8, "targets": [{"node": "1", "input": "width"}]}}


def _workflows(**extra: object) -> dict[str, object]:
    return {"smoke": {"workflow_file": "smoke.json", "parameters": ["width"], **extra}}


def test_stall_timeout_is_unset_unless_the_manifest_sets_it(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows()))
    assert result.errors == []
    assert result.workflows["smoke"].stall_timeout is None


def test_stall_timeout_seconds_are_carried_into_the_workflow_manifest(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows(stall_timeout=45)))
    assert result.errors == []
    assert result.workflows["smoke"].stall_timeout == 45.0


def test_a_zero_stall_timeout_is_an_error_naming_the_key(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows(stall_timeout=0)))
    assert "smoke" not in result.workflows
    assert [(e.workflow, e.key) for e in result.errors] == [("smoke", "stall_timeout")]
    assert "greater than 0" in result.errors[0].message


def test_a_non_numeric_stall_timeout_is_an_error_naming_the_key(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows(stall_timeout="soon")))
    assert "smoke" not in result.workflows
    assert [(e.workflow, e.key) for e in result.errors] == [("smoke", "stall_timeout")]
    assert "number" in result.errors[0].message
