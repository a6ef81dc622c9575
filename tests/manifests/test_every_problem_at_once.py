"""One load lists every problem of a workflow: a misspelt or bad key does not hide the binding
errors beside it, and the workflow is still refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from api.cli.main import main
from manifests.loading import LoadResult, load_manifests
from tests.support.manifests import ManifestDirs

MISSING_NODE = [{"node": "Latent Image", "input": "width"}]
WIDTH = {"type": "integer", "default": 64, "targets": [{"node": "1", "input": "width"}]}


def smoke(parameters: list[str], **entry: Any) -> dict[str, Any]:
    return {"smoke": {"workflow_file": "smoke.json", "parameters": parameters, **entry}}


def smoke_errors(result: LoadResult) -> dict[str | None, str]:
    """The problems reported against workflow `smoke`, by key; `smoke` was refused."""
    assert "smoke" not in result.workflows and "smoke" in result.failed
    return {e.key: e.message for e in result.errors if e.workflow == "smoke"}


def test_an_unknown_key_in_an_override_does_not_hide_a_binding_to_a_missing_node(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    overrides = {"width": {"deafult": 32, "targets": MISSING_NODE}}
    result = load_manifests(*make_dirs({"width": WIDTH}, smoke(["width"], overrides=overrides)))
    errors = smoke_errors(result)
    assert set(errors) == {"overrides.width.deafult", "parameters.width.targets[0]"}
    assert "unknown key" in errors["overrides.width.deafult"]
    assert "no node has the id or title 'Latent Image'" in errors["parameters.width.targets[0]"]


def test_an_unknown_key_in_the_entry_does_not_hide_a_binding_to_a_missing_node(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    base = {"width": {**WIDTH, "targets": MISSING_NODE}}
    result = load_manifests(*make_dirs(base, smoke(["width"], timeuot=30)))
    assert set(smoke_errors(result)) == {"timeuot", "parameters.width.targets[0]"}


def test_a_bad_value_in_the_entry_does_not_hide_a_binding_to_a_missing_node(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    overrides = {"width": {"targets": MISSING_NODE}}
    dirs = make_dirs({"width": WIDTH}, smoke(["width"], overrides=overrides, timeout="long"))
    assert set(smoke_errors(load_manifests(*dirs))) == {"timeout", "parameters.width.targets[0]"}


def test_an_unknown_key_in_base_yaml_does_not_hide_the_workflows_binding_errors(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    base = {"width": {"type": "integer", "deafult": 64, "targets": MISSING_NODE}}
    result = load_manifests(*make_dirs(base, smoke(["width"])))
    (in_base,) = [e for e in result.errors if e.file.endswith("base.yaml")]
    assert in_base.key == "width.deafult"
    errors = smoke_errors(result)
    assert set(errors) == {"parameters[0]", "parameters.width.targets[0]"}
    assert "invalid definition in base.yaml" in errors["parameters[0]"]


def test_a_broken_parameter_does_not_hide_the_binding_errors_of_another(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    base = {"width": {**WIDTH, "targets": MISSING_NODE}}
    result = load_manifests(*make_dirs(base, smoke(["height", "width"])))
    errors = smoke_errors(result)
    assert set(errors) == {"parameters[0]", "parameters.width.targets[0]"}
    assert "'height' is not defined in base.yaml" in errors["parameters[0]"]


def test_a_misspelt_targets_key_is_reported_once_not_again_as_bound_to_nothing(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    overrides = {"width": {"tragets": [{"node": "1", "input": "width"}]}}
    base = {"width": {"type": "integer", "default": 64}}
    result = load_manifests(*make_dirs(base, smoke(["width"], overrides=overrides)))
    assert set(smoke_errors(result)) == {"overrides.width.tragets"}


def test_a_bad_parameter_list_is_reported_without_guesses_about_its_parameters(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    # Checked without its list, every override would read as one for an unlisted parameter.
    entry = {"workflow_file": "smoke.json", "parameters": "width", "outputs": ["Nowhere"]}
    entry["overrides"] = {"width": {"default": 32}}
    dirs = make_dirs({"width": WIDTH}, {"smoke": entry})
    errors = smoke_errors(load_manifests(*dirs))
    assert set(errors) == {"parameters", "outputs[0]"}


def test_manifests_check_prints_the_unknown_key_and_the_binding_error_of_one_workflow(
    make_dirs: Callable[..., ManifestDirs], capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = {"width": {"deafult": 32, "targets": MISSING_NODE}}
    manifests_dir, workflows_dir = make_dirs(
        {"width": WIDTH}, smoke(["width"], overrides=overrides)
    )
    argv = ["--manifests", str(manifests_dir), "--workflows", str(workflows_dir)]
    assert main(["manifests", "check", *argv]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2
    assert "workflow 'smoke': key 'overrides.width.deafult': unknown key" in lines[0]
    assert "workflow 'smoke': key 'parameters.width.targets[0]': no node" in lines[1]
    assert "2 error(s); 0 workflow(s) loaded" in captured.err
