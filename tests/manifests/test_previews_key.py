"""The optional `previews` key of a workflow entry: off by default, a boolean, carried through."""

from __future__ import annotations

from collections.abc import Callable

from manifests.loading import load_manifests
from tests.support.manifests import ManifestDirs

BASE = {"width": {"type": "integer", "default": 8, "targets": [{"node": "1", "input": "width"}]}}


def _workflows(**extra: object) -> dict[str, object]:
    return {"smoke": {"workflow_file": "smoke.json", "parameters": ["width"], **extra}}


def test_previews_are_off_unless_the_manifest_turns_them_on(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows()))
    assert result.errors == []
    assert result.workflows["smoke"].previews is False


def test_previews_true_is_carried_into_the_workflow_manifest(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows(previews=True)))
    assert result.errors == []
    assert result.workflows["smoke"].previews is True


def test_a_non_boolean_previews_value_is_an_error_naming_the_key(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows(previews="sometimes")))
    assert "smoke" not in result.workflows
    assert [(e.workflow, e.key) for e in result.errors] == [("smoke", "previews")]
    assert "bool" in result.errors[0].message
