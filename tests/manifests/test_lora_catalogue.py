"""loras.yaml: the LoRA catalogue the registry serves, and the trigger words (`prefix`, `suffix`)
a request that selects a LoRA gets around its prompt, joined as the original service joins them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from manifests.loading import load_manifests
from manifests.registry import ManifestRegistry
from manifests.render import render_prompt
from tests.support.graphs import SMOKE_GRAPH
from tests.support.manifests import ManifestDirs, fixture_dirs, write_file

ORIGINAL = fixture_dirs("original_format")


def resolved_prompt(params: dict[str, Any], dirs: ManifestDirs = ORIGINAL) -> str:
    manifest = ManifestRegistry(*dirs).get("sketch_default")
    rendered = render_prompt(manifest, params, revision="r")
    prompt_node = rendered.prompt["43"]["inputs"]["value"]
    assert prompt_node == rendered.params["prompt"]  # what ComfyUI gets is what the task shows
    return rendered.params["prompt"]


@pytest.mark.parametrize(
    ("lora", "prompt", "expected"),
    [
        ("Watercolor-Wash-v2.safetensors", "a harbour", "wtrclr wash, a harbour"),
        ("Ink-Lines.safetensors", "a harbour", "a harbour, bold ink lines"),
        # Each part is stripped; the prefix here is written with spaces around it.
        ("Pastel-Dream.safetensors", " a harbour ", "pastel dream, a harbour, soft morning light"),
        ("Ukiyo-e-Prints.safetensors", "Mount Fuji", "浮世絵 style, Mount Fuji"),
        # Described without trigger words: the original still strips the prompt.
        ("Plain-Helper.safetensors", "  a harbour  ", "a harbour"),
    ],
)
def test_the_selected_loras_trigger_words_go_around_the_prompt(
    lora: str, prompt: str, expected: str
) -> None:
    assert resolved_prompt({"prompt": prompt, "lora": lora}) == expected


@pytest.mark.parametrize("lora", ["None", "none", "Not-In-The-Catalogue.safetensors"])
def test_no_lora_or_an_undescribed_one_leaves_the_prompt_as_sent(lora: str) -> None:
    assert resolved_prompt({"prompt": " a harbour ", "lora": lora}) == " a harbour "


def test_an_empty_prompt_gets_no_trigger_words() -> None:
    assert resolved_prompt({"prompt": "", "lora": "Ink-Lines.safetensors"}) == ""


def test_the_default_lora_none_changes_nothing() -> None:
    assert resolved_prompt({"prompt": "a harbour"}) == "a harbour"


def test_the_registry_snapshot_exposes_the_catalogue() -> None:
    loras = ManifestRegistry(*ORIGINAL).snapshot().loras
    assert list(loras) == [
        "Watercolor-Wash-v2.safetensors",
        "Ink-Lines.safetensors",
        "Pastel-Dream.safetensors",
        "Ukiyo-e-Prints.safetensors",
        "Plain-Helper.safetensors",
    ]
    wash = loras["Watercolor-Wash-v2.safetensors"]
    assert wash.description == "Soft watercolour washes with bleeding edges and paper grain"
    assert wash.examples == [
        "assets/loras/watercolor/harbour.png",
        "assets/loras/watercolor/meadow.png",
    ]
    assert loras["Plain-Helper.safetensors"].prefix is None


LORA_GRAPH = {
    **SMOKE_GRAPH,
    "10": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "", "clip": ["11", 1]},
        "_meta": {"title": "Prompt"},
    },
    "11": {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "none.safetensors", "model": ["12", 0], "clip": ["12", 1]},
        "_meta": {"title": "Style"},
    },
    "12": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "base.safetensors"},
        "_meta": {"title": "Checkpoint"},
    },
}
OUR_BASE = {
    "prompt": {"type": "string", "targets": [{"node": "Prompt", "input": "text"}]},
    "style": {
        "type": "string",
        "default": "None",
        "targets": {"node": "Style", "input": "lora_name"},
    },
}


def test_a_parameter_of_any_name_bound_to_lora_name_selects_the_lora(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    manifests_dir, workflows_dir = make_dirs(
        OUR_BASE,
        {"styled": {"workflow_file": "styled.json", "parameters": ["prompt", "style"]}},
        {"styled.json": LORA_GRAPH},
    )
    write_file(manifests_dir / "loras.yaml", {"ink.safetensors": {"suffix": "ink"}})
    manifest = ManifestRegistry(manifests_dir, workflows_dir).get("styled")
    rendered = render_prompt(
        manifest, {"prompt": "a cat", "style": "ink.safetensors"}, revision="r"
    )
    assert rendered.prompt["10"]["inputs"]["text"] == "a cat, ink"
    assert rendered.prompt["11"]["inputs"]["lora_name"] == "ink.safetensors"


def test_a_list_of_named_entries_is_read_like_the_mapping(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    manifests_dir, workflows_dir = make_dirs(
        OUR_BASE,
        {"styled": {"workflow_file": "styled.json", "parameters": ["prompt", "style"]}},
        {"styled.json": LORA_GRAPH},
    )
    write_file(
        manifests_dir / "loras.yaml",
        "- {name: ink.safetensors, prefix: inked, description: Ink}\n",
    )
    result = load_manifests(manifests_dir, workflows_dir)
    assert result.errors == []
    assert result.loras["ink.safetensors"].prefix == "inked"


def test_a_bad_entry_is_named_and_left_out_while_the_rest_serves(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    manifests_dir, workflows_dir = make_dirs(OUR_BASE, "# none\n", {})
    write_file(
        manifests_dir / "loras.yaml",
        "good.safetensors: {prefix: good}\n"
        "typo.safetensors: {prefx: oops}\n"
        "renamed.safetensors: {name: other.safetensors}\n",
    )
    result = load_manifests(manifests_dir, workflows_dir)
    keys = sorted((e.file.endswith("loras.yaml"), e.key) for e in result.errors)
    assert keys == [(True, "renamed.safetensors.name"), (True, "typo.safetensors.prefx")]
    assert "unknown key" in " ".join(e.message for e in result.errors)
    assert list(result.loras) == ["good.safetensors"]


def test_an_unreadable_loras_yaml_keeps_the_last_good_catalogue_and_workflows(
    tmp_path: Path,
) -> None:
    manifests_dir, workflows_dir = tmp_path / "manifests", tmp_path / "workflows"
    shutil.copytree(ORIGINAL[0], manifests_dir)
    shutil.copytree(ORIGINAL[1], workflows_dir)
    registry = ManifestRegistry(manifests_dir, workflows_dir)
    before = registry.snapshot()
    write_file(manifests_dir / "loras.yaml", "a: [unclosed\n")
    after = registry.snapshot()
    assert any(e.file.endswith("loras.yaml") for e in after.errors)
    assert after.loras == before.loras
    assert set(after.stale) == set(before.workflows)


def test_an_edited_prefix_applies_to_the_next_render(tmp_path: Path) -> None:
    manifests_dir, workflows_dir = tmp_path / "manifests", tmp_path / "workflows"
    shutil.copytree(ORIGINAL[0], manifests_dir)
    shutil.copytree(ORIGINAL[1], workflows_dir)
    registry = ManifestRegistry(manifests_dir, workflows_dir)
    params = {"prompt": "a cat", "lora": "Ink-Lines.safetensors"}
    first = registry.render("sketch_default", params)
    write_file(manifests_dir / "loras.yaml", '"Ink-Lines.safetensors": {prefix: "inked"}\n')
    second = registry.render("sketch_default", params)
    assert (first.params["prompt"], second.params["prompt"]) == (
        "a cat, bold ink lines",
        "inked, a cat",
    )
    assert first.revision != second.revision
