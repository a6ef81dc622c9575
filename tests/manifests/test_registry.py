"""The registry sees edits on the next call, keeps the last good workflows through bad edits,
and reports what is wrong."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from manifests.errors import ParamsInvalid, UnknownWorkflow
from manifests.registry import ManifestRegistry
from tests.support.graphs import SMOKE_GRAPH
from tests.support.manifests import ManifestDirs, write_file


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    write_file(path, yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def registry(shipped_copy: ManifestDirs) -> ManifestRegistry:
    registry = ManifestRegistry(*shipped_copy)
    assert registry.snapshot().errors == []
    return registry


def test_unchanged_files_give_the_same_snapshot(registry: ManifestRegistry) -> None:
    assert registry.snapshot() is registry.snapshot()


def test_edited_default_is_seen_by_the_next_call(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    before = registry.snapshot().revision
    edit_yaml(
        shipped_copy[0] / "workflows.yaml",
        lambda d: d["smoke_image"]["overrides"]["width"].update(default=32),
    )
    assert registry.validate("smoke_image", {})["width"] == 32
    assert registry.snapshot().revision != before


def test_edited_graph_is_seen_by_the_next_render(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    graph_path = shipped_copy[1] / "smoke_image.json"
    graph = {**SMOKE_GRAPH}
    graph["3"] = {**SMOKE_GRAPH["3"], "class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    graph["4"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "x"},
        "_meta": {"title": "Save Image"},
    }
    graph["3"]["_meta"] = {"title": "Preview"}
    write_file(graph_path, graph)
    rendered = registry.render("smoke_image", {})
    assert rendered.prompt["3"]["class_type"] == "PreviewImage"
    assert rendered.revision == registry.snapshot().revision


def test_added_workflow_is_served_without_restart(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    manifests_dir, workflows_dir = shipped_copy
    write_file(workflows_dir / "tiny.json", SMOKE_GRAPH)
    edit_yaml(
        manifests_dir / "workflows.yaml",
        lambda d: d.update(tiny={"workflow_file": "tiny.json", "parameters": ["color"]}),
    )
    assert registry.render("tiny", {"color": 5}).prompt["1"]["inputs"]["color"] == 5


def test_removed_workflow_is_gone(registry: ManifestRegistry, shipped_copy: ManifestDirs) -> None:
    edit_yaml(shipped_copy[0] / "workflows.yaml", lambda d: d.pop("sd15_txt2img"))
    with pytest.raises(UnknownWorkflow) as caught:
        registry.get("sd15_txt2img")
    assert caught.value.known == ["flux_wavespeed", "smoke_image"]


def test_unparseable_workflows_yaml_keeps_every_last_good_workflow(
    registry: ManifestRegistry, shipped_copy: ManifestDirs, caplog: pytest.LogCaptureFixture
) -> None:
    good = registry.snapshot()
    with caplog.at_level(logging.ERROR, logger="manifests.registry"):
        write_file(shipped_copy[0] / "workflows.yaml", "smoke_image: [unclosed\n")
        snapshot = registry.snapshot()
    assert set(snapshot.workflows) == set(good.workflows)
    assert snapshot.stale == frozenset(good.workflows)
    assert "not valid YAML" in snapshot.errors[0].message
    assert "not valid YAML" in caplog.text
    assert registry.render("smoke_image", {}).revision == good.revision


def test_one_broken_workflow_keeps_its_last_good_version_and_the_others_update(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    old_revision = registry.snapshot().revision

    def change(d: dict) -> None:
        d["smoke_image"]["overrides"]["width"]["default"] = "wide"  # invalid
        d["sd15_txt2img"]["overrides"]["width"]["default"] = 768  # valid

    edit_yaml(shipped_copy[0] / "workflows.yaml", change)
    snapshot = registry.snapshot()
    assert snapshot.stale == {"smoke_image"}
    (error,) = snapshot.errors
    assert (error.workflow, error.key) == ("smoke_image", "overrides.width.default")
    assert registry.validate("smoke_image", {})["width"] == 64
    assert registry.render("smoke_image", {}).revision == old_revision
    assert registry.validate("sd15_txt2img", {"prompt": "p"})["width"] == 768
    assert registry.render("sd15_txt2img", {"prompt": "p"}).revision == snapshot.revision


def test_deleted_graph_of_a_listed_workflow_is_reported_and_its_last_version_kept(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    (shipped_copy[1] / "sd15_txt2img.json").unlink()
    snapshot = registry.snapshot()
    assert "sd15_txt2img" in snapshot.stale
    assert any(e.key == "workflow_file" and "file not found" in e.message for e in snapshot.errors)


def test_fixing_the_edit_clears_the_errors(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    path = shipped_copy[0] / "workflows.yaml"
    original = path.read_text()
    write_file(path, "smoke_image: [unclosed\n")
    assert registry.snapshot().errors
    write_file(path, original)
    snapshot = registry.snapshot()
    assert snapshot.errors == [] and snapshot.stale == frozenset()


def test_broken_workflow_on_first_load_is_absent_and_reported(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    dirs = make_dirs({}, {"smoke": {"workflow_file": "missing.json"}})
    snapshot = ManifestRegistry(*dirs).snapshot()
    assert snapshot.workflows == {} and snapshot.errors[0].workflow == "smoke"


def test_same_size_edit_with_a_new_mtime_is_seen(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    path = shipped_copy[0] / "workflows.yaml"
    text = path.read_text()
    assert "default: 64" in text
    write_file(path, text.replace("default: 64", "default: 48", 1))
    assert registry.validate("smoke_image", {})["width"] == 48


def test_unknown_workflow_lists_the_known_ones(registry: ManifestRegistry) -> None:
    with pytest.raises(UnknownWorkflow) as caught:
        registry.render("nope", {})
    assert caught.value.workflow_id == "nope" and "smoke_image" in caught.value.known


def test_validate_raises_params_invalid(registry: ManifestRegistry) -> None:
    with pytest.raises(ParamsInvalid):
        registry.validate("smoke_image", {"width": -1})


def test_environment_variables_choose_the_directories(
    shipped_copy: ManifestDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests_dir, workflows_dir = shipped_copy
    edit_yaml(manifests_dir / "workflows.yaml", lambda d: d.pop("flux_wavespeed"))
    """The processes read MANIFESTS_DIR and WORKFLOWS_DIR once, in their settings, and hand the
    directories to the registry (the manifest layer reads no environment)."""
    from activities.workers.settings import SharedSettings

    monkeypatch.setenv("MANIFESTS_DIR", str(manifests_dir))
    monkeypatch.setenv("WORKFLOWS_DIR", str(workflows_dir))
    settings = SharedSettings()
    registry = ManifestRegistry(settings.manifests_dir, settings.workflows_dir)
    assert (registry.manifests_dir, registry.workflows_dir) == (manifests_dir, workflows_dir)
    assert "flux_wavespeed" not in registry.snapshot().workflows


def test_missing_directory_gives_errors_not_exceptions(tmp_path: Path) -> None:
    snapshot = ManifestRegistry(tmp_path / "none", tmp_path / "none").snapshot()
    assert snapshot.workflows == {} and snapshot.errors


def test_directory_appearing_later_is_picked_up(tmp_path: Path, shipped_copy: ManifestDirs) -> None:
    target = tmp_path / "later"
    registry = ManifestRegistry(target / "manifests", target / "workflows")
    assert registry.snapshot().workflows == {}
    target.mkdir()
    os.rename(shipped_copy[0], target / "manifests")
    os.rename(shipped_copy[1], target / "workflows")
    assert "smoke_image" in registry.snapshot().workflows


def test_edit_of_a_graph_in_a_subfolder_is_seen(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    manifests_dir, workflows_dir = shipped_copy
    write_file(workflows_dir / "team" / "tiny.json", SMOKE_GRAPH)
    edit_yaml(
        manifests_dir / "workflows.yaml",
        lambda d: d.update(tiny={"workflow_file": "team/tiny.json", "parameters": ["color"]}),
    )
    assert registry.render("tiny", {}).prompt["3"]["inputs"]["filename_prefix"] == "smoke"
    graph = {
        **SMOKE_GRAPH,
        "3": {**SMOKE_GRAPH["3"], "inputs": {"images": ["2", 0], "filename_prefix": "smoky"}},
    }
    write_file(workflows_dir / "team" / "tiny.json", graph)
    assert registry.render("tiny", {}).prompt["3"]["inputs"]["filename_prefix"] == "smoky"


def test_concurrent_readers_always_see_every_workflow_while_files_are_rewritten(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    path = shipped_copy[0] / "workflows.yaml"
    original = path.read_text()
    stop = threading.Event()
    seen: list[frozenset[str]] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                seen.append(frozenset(registry.snapshot().workflows))
        except BaseException as exc:  # recorded and asserted on below
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for width in range(20, 40):
        write_file(path, original.replace("default: 64", f"default: {width}", 1))
    write_file(path, original.replace("default: 64", "default: 99", 1))
    stop.set()
    for reader in readers:
        reader.join(timeout=30)
    assert failures == []
    assert seen and all(ids == {"flux_wavespeed", "sd15_txt2img", "smoke_image"} for ids in seen)
    final = registry.snapshot()
    assert final.errors == [] and registry.validate("smoke_image", {})["width"] == 99


def test_zero_byte_workflows_yaml_keeps_the_last_good_workflows(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    write_file(shipped_copy[0] / "workflows.yaml", "")
    snapshot = registry.snapshot()
    assert set(snapshot.workflows) == {"flux_wavespeed", "sd15_txt2img", "smoke_image"}
    assert "file is empty" in snapshot.errors[0].message


def test_workflows_yaml_with_only_a_comment_removes_every_workflow(
    registry: ManifestRegistry, shipped_copy: ManifestDirs
) -> None:
    write_file(shipped_copy[0] / "workflows.yaml", "# no workflows for now\n")
    snapshot = registry.snapshot()
    assert snapshot.workflows == {} and snapshot.errors == []
