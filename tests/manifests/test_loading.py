"""Loading is strict, and every problem names its file, workflow and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manifests.errors import ManifestError
from manifests.loading import load_manifests
from tests.support.graphs import SMOKE_GRAPH
from tests.support.manifests import ManifestDirs, fixture_dirs

WIDTH = {"type": "integer", "default": 64, "min": 1, "targets": [{"node": "1", "input": "width"}]}


def smoke_workflow(*parameters: str, **entry: Any) -> dict[str, Any]:
    """workflows.yaml with one workflow, `smoke`, running smoke.json with these parameters."""
    return {"smoke": {"workflow_file": "smoke.json", "parameters": list(parameters), **entry}}


def load(dirs: ManifestDirs):
    return load_manifests(*dirs)


def only_error(dirs: ManifestDirs) -> ManifestError:
    result = load(dirs)
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


@pytest.mark.parametrize(
    ("workflow", "key", "fragment"),
    [
        (
            "missing_node",
            "parameters.width.targets[0]",
            "no node has the id or title 'Latent Image'",
        ),
        ("missing_input", "parameters.width.targets[0]", "has no input 'widht'"),
        ("linked_input", "parameters.width.targets[0]", "is a link from node 1"),
        ("missing_file", "workflow_file", "file not found"),
        ("default_out_of_bounds", "overrides.width.default", "must be >= 1 (got 0)"),
    ],
)
def test_binding_and_default_errors_name_file_workflow_and_key(
    workflow: str, key: str, fragment: str
) -> None:
    result = load(fixture_dirs("bad_bindings"))
    matching = [e for e in result.errors if e.workflow == workflow]
    assert len(matching) == 1
    error = matching[0]
    assert error.file.endswith("workflows.yaml")
    assert error.key == key
    assert fragment in error.message
    assert workflow not in result.workflows


def test_unknown_key_in_base_yaml_is_reported_against_base_yaml() -> None:
    result = load(fixture_dirs("typos"))
    (error,) = [e for e in result.errors if e.file.endswith("base.yaml")]
    assert (error.workflow, error.key) == (None, "width.deafult")
    assert "unknown key" in error.message and "default" in error.message


def test_unknown_key_in_a_workflow_entry_is_reported() -> None:
    (error,) = [e for e in load(fixture_dirs("typos")).errors if e.workflow == "misspelt_entry"]
    assert error.key == "timeuot" and "timeout" in error.message


def test_unknown_key_in_an_override_is_reported() -> None:
    (error,) = [e for e in load(fixture_dirs("typos")).errors if e.workflow == "misspelt_override"]
    assert error.key == "overrides.height.maximum"


def test_workflow_using_a_broken_base_definition_fails_with_a_pointer_to_it() -> None:
    errors = load(fixture_dirs("typos")).errors
    (error,) = [e for e in errors if e.workflow == "uses_broken_definition"]
    assert "invalid definition in base.yaml" in error.message


def test_broken_workflows_do_not_hide_the_good_ones() -> None:
    result = load(fixture_dirs("typos"))
    assert list(result.workflows) == ["fine"]
    assert result.failed == {"misspelt_entry", "misspelt_override", "uses_broken_definition"}


def test_ui_format_export_is_rejected_with_how_to_export_the_api_format() -> None:
    error = only_error(fixture_dirs("ui_export"))
    assert error.file.endswith("ui_export.json")
    assert error.workflow == "exported_from_the_editor"
    assert "UI-format" in error.message and "Export (API)" in error.message


def test_original_convention_fixture_loads_cleanly() -> None:
    result = load(fixture_dirs("original_convention"))
    assert result.errors == [] and list(result.workflows) == ["primitives"]


def test_manifest_error_text_names_file_workflow_and_key() -> None:
    error = ManifestError("manifests/workflows.yaml", "sd15", "parameters[0]", "not defined")
    assert (
        str(error) == "manifests/workflows.yaml: workflow 'sd15': key 'parameters[0]': not defined"
    )
    assert str(ManifestError("base.yaml", None, None, "bad")) == "base.yaml: bad"


def test_invalid_yaml_is_reported_with_its_file_and_nothing_loads(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    dirs = make_dirs({"width": WIDTH}, "smoke: {workflow_file: smoke.json\n")
    result = load(dirs)
    (error,) = result.errors
    assert error.file.endswith("workflows.yaml") and "not valid YAML" in error.message
    assert result.unreadable and result.workflows == {}


def test_duplicate_yaml_key_is_rejected(make_dirs: Callable[..., ManifestDirs]) -> None:
    base = "width:\n  type: integer\n  default: 64\n  default: 65\n"
    error = only_error(make_dirs(base, {}))
    assert error.file.endswith("base.yaml") and "duplicate key 'default'" in error.message


def test_invalid_json_graph_is_reported_against_the_graph_file(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    dirs = make_dirs(
        {"width": WIDTH},
        smoke_workflow("width"),
        {"smoke.json": "{not json"},
    )
    error = only_error(dirs)
    assert error.file.endswith("smoke.json") and error.workflow == "smoke"
    assert "not valid JSON" in error.message


def test_link_to_a_node_that_is_not_in_the_graph_is_reported(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    graph = {**SMOKE_GRAPH, "3": {"class_type": "SaveImage", "inputs": {"images": ["9", 0]}}}
    dirs = make_dirs(
        {"width": WIDTH},
        smoke_workflow("width"),
        {"smoke.json": graph},
    )
    error = only_error(dirs)
    assert error.key == "3.inputs.images" and "node '9'" in error.message


def test_node_without_class_type_is_reported(make_dirs: Callable[..., ManifestDirs]) -> None:
    graph = {**SMOKE_GRAPH, "2": {"inputs": {"image": ["1", 0]}}}
    dirs = make_dirs(
        {"width": WIDTH},
        smoke_workflow("width"),
        {"smoke.json": graph},
    )
    assert only_error(dirs).key == "2.class_type"


def test_ambiguous_title_is_reported(make_dirs: Callable[..., ManifestDirs]) -> None:
    graph = {**SMOKE_GRAPH, "4": {**SMOKE_GRAPH["1"]}}
    graph["3"] = {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "x"}}
    width = {**WIDTH, "targets": [{"node": "Empty Image", "input": "width"}]}
    dirs = make_dirs(
        {"width": width},
        smoke_workflow("width"),
        {"smoke.json": graph},
    )
    assert "used by several nodes (1, 4)" in only_error(dirs).message


def test_parameter_not_defined_anywhere_is_reported(make_dirs: Callable[..., ManifestDirs]) -> None:
    dirs = make_dirs({}, smoke_workflow("width"))
    error = only_error(dirs)
    assert error.key == "parameters[0]" and "not defined in base.yaml" in error.message


def test_full_definition_under_overrides_needs_no_base_entry(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    workflows = smoke_workflow("width", overrides={"width": WIDTH})
    result = load(make_dirs({}, workflows))
    assert result.errors == [] and result.workflows["smoke"].parameters["width"].default == 64


def test_override_for_an_unlisted_parameter_is_reported(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    workflows = smoke_workflow("width", overrides={"height": {"default": 3}})
    assert only_error(make_dirs({"width": WIDTH}, workflows)).key == "overrides.height"


def test_required_with_a_default_is_reported(make_dirs: Callable[..., ManifestDirs]) -> None:
    error = only_error(make_dirs({"width": {**WIDTH, "required": True}}, {}))
    assert error.key == "width.default" and "required" in error.message


def test_override_making_a_parameter_required_drops_the_shared_default(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    workflows = smoke_workflow("width", overrides={"width": {"required": True}})
    result = load(make_dirs({"width": WIDTH}, workflows))
    width = result.workflows["smoke"].parameters["width"]
    assert (width.required, width.default) == (True, None)


@pytest.mark.parametrize(
    ("definition", "key", "fragment"),
    [
        ({"type": "integer", "default": "64"}, "width.default", "expected an integer"),
        ({"type": "integer", "min": 10, "max": 1}, "width.min", "greater than max"),
        ({"type": "boolean", "max_length": 3}, "width.max_length", "only string"),
        ({"type": "string", "min": 3}, "width.min", "only integer and float"),
        ({"type": "integer", "min": 0.5}, "width.min", "must be an integer"),
        ({"type": "float", "random": True}, "width.random", "only integer"),
        ({"type": "string", "choices": ["a", 1]}, "width.choices[1]", "expected a string"),
        ({"type": "string", "pattern": "("}, "width.pattern", "not a valid regular expression"),
        ({"type": "strnig"}, "width.type", "Input should be"),
        ({"type": "integer", "min": "3"}, "width.min", "expected a number, got '3'"),
        ({"type": "boolean", "required": "yes"}, "width.required", "valid boolean"),
        (
            {
                "type": "boolean",
                "bypass": {"node": "2", "when": ["false"], "outputs": {0: "image"}},
            },
            "width.bypass.when[0]",
            "can never match",
        ),
    ],
)
def test_inconsistent_definition_is_reported_by_key(
    make_dirs: Callable[..., ManifestDirs], definition: dict[str, Any], key: str, fragment: str
) -> None:
    error = only_error(make_dirs({"width": definition}, {}))
    assert error.file.endswith("base.yaml") and error.key == key
    assert fragment in error.message


def test_parameter_bound_to_nothing_is_reported(make_dirs: Callable[..., ManifestDirs]) -> None:
    workflows = smoke_workflow("width")
    error = only_error(make_dirs({"width": {"type": "integer", "default": 3}}, workflows))
    assert error.key == "parameters.width.targets" and "bound to nothing" in error.message


def test_bypass_must_map_every_output_its_consumers_use(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    invert = {"type": "boolean", "default": True}
    invert["bypass"] = {"node": "Invert", "when": [False], "outputs": {1: "image"}}
    workflows = smoke_workflow("invert")
    error = only_error(make_dirs({"invert": invert}, workflows))
    assert error.key == "parameters.invert.bypass.outputs"
    assert "uses output 0 of node 2" in error.message


def test_two_parameters_on_one_input_are_reported(make_dirs: Callable[..., ManifestDirs]) -> None:
    workflows = smoke_workflow("width", "size")
    error = only_error(make_dirs({"width": WIDTH, "size": WIDTH}, workflows))
    assert (
        error.key == "parameters.size.targets[0]"
        and "already set by parameter 'width'" in error.message
    )


@pytest.mark.parametrize("workflow_file", ["../manifests/base.yaml", "/etc/hostname"])
def test_workflow_file_outside_the_workflows_directory_is_refused(
    make_dirs: Callable[..., ManifestDirs], workflow_file: str
) -> None:
    workflows = {"smoke": {"workflow_file": workflow_file, "parameters": ["width"]}}
    assert only_error(make_dirs({"width": WIDTH}, workflows)).key == "workflow_file"


def test_graph_in_a_subfolder_loads(make_dirs: Callable[..., ManifestDirs]) -> None:
    workflows = {"smoke": {"workflow_file": "team/smoke.json", "parameters": ["width"]}}
    result = load(make_dirs({"width": WIDTH}, workflows, {"team/smoke.json": SMOKE_GRAPH}))
    assert result.errors == [] and "smoke" in result.workflows


def test_revision_depends_on_content_not_on_location(
    tmp_path: Path, shipped_copy: ManifestDirs
) -> None:
    from manifests.registry import DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR

    here = load_manifests(DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR).revision
    assert load_manifests(*shipped_copy).revision == here
    (shipped_copy[1] / "smoke_image.json").write_text("{}")
    assert load_manifests(*shipped_copy).revision != here


def test_options_default_and_resolve(make_dirs: Callable[..., ManifestDirs]) -> None:
    workflows = {
        "plain": {"workflow_file": "smoke.json", "parameters": ["width"]},
        "tuned": {
            "workflow_file": "smoke.json",
            "parameters": ["width"],
            "timeout": 30,
            "pool": "big",
            "outputs": ["Save Image", 3],
            "retries": 0,
        },
    }
    result = load(make_dirs({"width": WIDTH}, workflows))
    plain, tuned = result.workflows["plain"], result.workflows["tuned"]
    assert (plain.timeout_seconds, plain.pool, plain.outputs, plain.max_attempts) == (
        600.0,
        "default",
        None,
        3,
    )
    assert (tuned.timeout_seconds, tuned.pool, tuned.outputs, tuned.max_attempts) == (
        30.0,
        "big",
        ["3"],
        1,
    )


def test_integer_node_ids_in_yaml_are_read_as_node_ids(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    base = "width:\n  type: integer\n  default: 8\n  targets: [{node: 1, input: width}]\n"
    workflows = smoke_workflow("width")
    result = load(make_dirs(base, workflows))
    assert result.workflows["smoke"].param_bindings() == {"1.width": "width"}


def test_missing_directories_are_errors_not_exceptions(tmp_path: Path) -> None:
    result = load_manifests(tmp_path / "nope", tmp_path / "nada")
    assert result.unreadable
    assert any("directory not found" in e.message for e in result.errors)


def test_bypass_output_indexes_may_be_quoted(make_dirs: Callable[..., ManifestDirs]) -> None:
    invert = {"type": "boolean", "default": True}
    invert["bypass"] = {"node": "Invert", "when": [False], "outputs": {"0": "image"}}
    workflows = smoke_workflow("invert")
    result = load(make_dirs({"invert": invert}, workflows))
    assert result.errors == []
    assert result.workflows["smoke"].bypasses["invert"].outputs == {0: "image"}


def test_node_with_a_non_object_meta_is_reported(make_dirs: Callable[..., ManifestDirs]) -> None:
    graph = {**SMOKE_GRAPH, "2": {**SMOKE_GRAPH["2"], "_meta": "Invert"}}
    dirs = make_dirs(
        {"width": WIDTH},
        smoke_workflow("width"),
        {"smoke.json": graph},
    )
    assert only_error(dirs).key == "2._meta"
