"""The optional `deadline` key of a workflow entry: 24 h unless set, a positive number of seconds,
carried into the manifest (and from there to the workflow, which retries infrastructure faults
until then)."""

from __future__ import annotations

from collections.abc import Callable

from manifests.definitions import DEFAULT_DEADLINE_SECONDS
from manifests.loading import load_manifests
from tests.manifests.conftest import ManifestDirs

BASE = {"width": {"type": "integer", "default": 8, "targets": [{"node": "1", "input": "width"}]}}


def _workflows(**extra: object) -> dict[str, object]:
    return {"smoke": {"workflow_file": "smoke.json", "parameters": ["width"], **extra}}


def test_the_deadline_is_a_day_unless_the_manifest_sets_it(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows()))
    assert result.errors == []
    assert result.workflows["smoke"].deadline_seconds == DEFAULT_DEADLINE_SECONDS == 86400


def test_deadline_seconds_are_carried_into_the_workflow_manifest(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    result = load_manifests(*make_dirs(BASE, _workflows(deadline=3600)))
    assert result.errors == []
    assert result.workflows["smoke"].deadline_seconds == 3600.0


def test_a_zero_or_non_numeric_deadline_is_an_error_naming_the_key(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    for bad in (0, "tomorrow"):
        result = load_manifests(*make_dirs(BASE, _workflows(deadline=bad)))
        assert "smoke" not in result.workflows
        assert [(e.workflow, e.key) for e in result.errors] == [("smoke", "deadline")]
