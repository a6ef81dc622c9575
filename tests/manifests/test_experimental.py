"""Experimental workflows: a workflows/exp_*.json graph without a workflows.yaml entry runs with
every base.yaml parameter, as in the original service, unless configuration turns them off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from activities.workers.settings import SharedSettings
from manifests.errors import ParamsInvalid, UnknownWorkflow
from manifests.loading import load_manifests
from manifests.registry import ManifestRegistry
from manifests.render import render_prompt
from tests.support.manifests import ManifestDirs, fixture_dirs, write_file

ORIGINAL = fixture_dirs("original_format")


@pytest.fixture
def dirs(tmp_path: Path) -> ManifestDirs:
    manifests_dir, workflows_dir = tmp_path / "manifests", tmp_path / "workflows"
    shutil.copytree(ORIGINAL[0], manifests_dir)
    shutil.copytree(ORIGINAL[1], workflows_dir)
    return manifests_dir, workflows_dir


def test_an_exp_graph_is_served_as_an_experimental_workflow() -> None:
    manifest = ManifestRegistry(*ORIGINAL, experimental=True).get("exp_sketch_wide")
    assert manifest.experimental is True
    assert manifest.workflow_file == "exp_sketch_wide.json"
    assert not ManifestRegistry(*ORIGINAL).get("sketch_default").experimental


def test_every_base_parameter_is_accepted_and_none_is_required() -> None:
    manifest = ManifestRegistry(*ORIGINAL, experimental=True).get("exp_sketch_wide")
    base_names = ["width", "height", "prompt", "seed", "steps", "lora", "lora_strength"]
    assert list(manifest.parameters)[: len(base_names)] == base_names
    assert not any(p.required for p in manifest.parameters.values())
    rendered = render_prompt(manifest, {}, revision="r")
    assert rendered.prompt["43"]["inputs"]["value"] == "a quiet street"  # the graph's own value
    assert rendered.prompt["44"]["inputs"]["value"] == 768  # base.yaml's default


def test_a_parameter_the_graph_does_not_use_is_accepted_and_ignored() -> None:
    manifest = ManifestRegistry(*ORIGINAL, experimental=True).get("exp_sketch_wide")
    rendered = render_prompt(manifest, {"prompt": "x", "steps": 40}, revision="r")
    assert rendered.prompt == render_prompt(manifest, {"prompt": "x"}, revision="r").prompt | {
        "46": rendered.prompt["46"]  # only the random seed differs
    }
    assert rendered.params["steps"] == 40
    assert "lora_strength" not in rendered.params  # unused: no default filled in


def test_the_lora_trigger_words_need_the_lora_to_reach_the_graph() -> None:
    manifest = ManifestRegistry(*ORIGINAL, experimental=True).get("exp_sketch_wide")
    rendered = render_prompt(
        manifest, {"prompt": "x", "lora": "Ink-Lines.safetensors"}, revision="r"
    )
    assert rendered.params["prompt"] == "x"  # this graph has no LoRA node


def test_a_parameter_base_yaml_does_not_define_is_refused() -> None:
    manifest = ManifestRegistry(*ORIGINAL, experimental=True).get("exp_sketch_wide")
    with pytest.raises(ParamsInvalid) as invalid:
        render_prompt(manifest, {"cfg": 7}, revision="r")
    assert [e.param for e in invalid.value.errors] == ["cfg"]


def test_experimental_workflows_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(UnknownWorkflow):
        ManifestRegistry(*ORIGINAL, experimental=False).get("exp_sketch_wide")
    # What the API and the workers pass in: their settings read COMFY_EXPERIMENTAL_WORKFLOWS.
    monkeypatch.setenv("COMFY_EXPERIMENTAL_WORKFLOWS", "0")
    off = SharedSettings().experimental_workflows
    snapshot = ManifestRegistry(*ORIGINAL, experimental=off).snapshot()
    assert set(snapshot.workflows) == {"sketch_default", "sketch_restyle"}
    monkeypatch.setenv("COMFY_EXPERIMENTAL_WORKFLOWS", "1")
    on = SharedSettings().experimental_workflows
    assert "exp_sketch_wide" in ManifestRegistry(*ORIGINAL, experimental=on).snapshot().workflows


def test_an_exp_graph_with_an_entry_is_not_listed_twice(dirs: ManifestDirs) -> None:
    manifests_dir, workflows_dir = dirs
    with (manifests_dir / "workflows.yaml").open("a", encoding="utf-8") as f:
        f.write("\nwide:\n  workflow_file: exp_sketch_wide.json\n  parameters: [prompt]\n")
    result = load_manifests(manifests_dir, workflows_dir)
    assert result.errors == []
    assert "exp_sketch_wide" not in result.workflows and "wide" in result.workflows


def test_a_new_exp_graph_is_served_without_a_restart(dirs: ManifestDirs) -> None:
    manifests_dir, workflows_dir = dirs
    registry = ManifestRegistry(manifests_dir, workflows_dir, experimental=True)
    assert "exp_second" not in registry.snapshot().workflows
    graph = json.loads((workflows_dir / "sketch_default.json").read_text(encoding="utf-8"))
    write_file(workflows_dir / "exp_second.json", graph)
    manifest = registry.get("exp_second")
    rendered = render_prompt(
        manifest, {"prompt": "x", "lora": "Ink-Lines.safetensors"}, revision="r"
    )
    assert rendered.params["prompt"] == "x, bold ink lines"


def test_a_broken_exp_graph_is_reported_under_its_workflow_id(dirs: ManifestDirs) -> None:
    manifests_dir, workflows_dir = dirs
    write_file(workflows_dir / "exp_ui.json", {"nodes": [], "links": []})
    result = load_manifests(manifests_dir, workflows_dir)
    (error,) = result.errors
    assert error.workflow == "exp_ui" and "Export (API)" in error.message
    assert "exp_ui" in result.failed
