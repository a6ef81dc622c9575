"""A parameter bound to a model loader's file input takes a file name, an hf:// reference or a
{"url", "sha256"?} object; the rendered graph names the file the GPU worker will download."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifests.errors import ParamsInvalid
from manifests.model_inputs import ModelFromUrl, parse_model_source, resolve_hf
from manifests.registry import ManifestRegistry
from manifests.render import render_prompt
from tests.support.graphs import CHECKPOINT_GRAPH
from tests.support.manifests import (
    CHECKPOINT_BASE_YAML,
    CHECKPOINT_WORKFLOW_ID,
    CHECKPOINT_WORKFLOWS_YAML,
    INVERT_WORKFLOW_ID,
    valid_registry,
    write_checkpoint_manifests,
    write_image_manifests,
    write_manifest_dirs,
)

SHA = "ab" * 32


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ManifestRegistry:
    return write_checkpoint_manifests(tmp_path_factory.mktemp("model-values"))


def _render(registry: ManifestRegistry, value: object):
    return render_prompt(registry.get(CHECKPOINT_WORKFLOW_ID), {"checkpoint": value}, revision="r")


def _problem(registry: ManifestRegistry, value: object) -> str:
    with pytest.raises(ParamsInvalid) as caught:
        _render(registry, value)
    (error,) = caught.value.errors
    assert error.param == "checkpoint"
    return error.reason


def test_a_loader_parameter_is_known_with_its_model_folder(registry: ManifestRegistry):
    assert registry.get(CHECKPOINT_WORKFLOW_ID).model_folders() == {"checkpoint": "checkpoints"}


def test_a_file_name_is_written_as_is_and_downloads_nothing(registry: ManifestRegistry):
    rendered = _render(registry, "sd15.safetensors")
    assert rendered.prompt["1"]["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert rendered.model_inputs == []


def test_a_url_becomes_a_download_and_the_graph_names_its_file(registry: ManifestRegistry):
    value = {"url": "https://example.com/models/sd15.safetensors", "sha256": SHA}
    rendered = _render(registry, value)
    (model,) = rendered.model_inputs
    assert model.param == "checkpoint"
    assert model.folder == "checkpoints"
    assert model.source == ModelFromUrl("https://example.com/models/sd15.safetensors", SHA)
    assert model.targets == ["1.ckpt_name"]
    name = rendered.prompt["1"]["inputs"]["ckpt_name"]
    assert name == model.source.file_name()
    assert name.startswith("sd15-") and name.endswith(".safetensors")
    assert rendered.params["checkpoint"] == value  # history keeps what the request said


def test_two_urls_with_one_file_name_get_two_files():
    first = ModelFromUrl("https://a.example/model.safetensors").file_name()
    second = ModelFromUrl("https://b.example/model.safetensors").file_name()
    assert first != second


def test_hf_references_resolve_to_the_hub_with_an_optional_revision():
    assert (
        resolve_hf("hf://org/repo/sub/model.safetensors")
        == "https://huggingface.co/org/repo/resolve/main/sub/model.safetensors"
    )
    assert (
        resolve_hf("hf://org/repo@v1.0/model.safetensors")
        == "https://huggingface.co/org/repo/resolve/v1.0/model.safetensors"
    )
    assert parse_model_source({"url": "hf://org/repo/m.safetensors"}).url.startswith(
        "https://huggingface.co/org/repo/resolve/main/"
    )


def test_an_hf_string_is_a_download(registry: ManifestRegistry):
    (model,) = _render(registry, "hf://org/repo/model.safetensors").model_inputs
    assert model.source.url == "https://huggingface.co/org/repo/resolve/main/model.safetensors"


@pytest.mark.parametrize(
    ("value", "expected", "field"),
    [
        ({"url": "https://x.example/m.safetensors", "token": "t"}, "unknown key 'token'", "token"),
        (
            {"url": "https://x.example/m.safetensors", "sha256": "ABC"},
            '"sha256" must be 64',
            "sha256",
        ),
        ({"url": "ftp://x.example/m.safetensors"}, "must be an http(s) URL", "url"),
        ({"url": "https://u:p@x.example/m.safetensors"}, "must not contain credentials", "url"),
        ({"url": "https://x.example/model.zip"}, "does not end in an extension", "url"),
        (
            {"url": "https://x.example/m.safetensors", "filename": "m.zip"},
            "does not end in an extension",
            "filename",
        ),
        ("hf://org/model.safetensors", "is not an hf:// reference", None),
        ("hf://org/repo/../m.safetensors", "not a valid path segment", None),
        ({"sha256": SHA}, '"url" must be a non-empty string', "url"),
    ],
)
def test_malformed_references_are_refused_naming_the_problem_and_the_key(
    registry: ManifestRegistry, value: object, expected: str, field: str | None
):
    with pytest.raises(ParamsInvalid) as caught:
        _render(registry, value)
    (error,) = caught.value.errors
    assert (error.param, error.field) == ("checkpoint", field)
    assert expected in error.reason


def test_each_bad_key_of_a_reference_is_refused_on_its_own(registry: ManifestRegistry):
    with pytest.raises(ParamsInvalid) as caught:
        _render(registry, {"sha256": 1, "filename": ""})
    assert [(e.param, e.field) for e in caught.value.errors] == [
        ("checkpoint", "url"),
        ("checkpoint", "sha256"),
        ("checkpoint", "filename"),
    ]


def test_a_url_with_a_filename_may_name_a_file_without_extension(registry: ManifestRegistry):
    value = {"url": "https://x.example/download?id=3", "filename": "photo-real.safetensors"}
    (model,) = _render(registry, value).model_inputs
    assert model.source.file_name().startswith("photo-real-")


def test_a_parameter_with_choices_takes_no_url(tmp_path: Path):
    base = CHECKPOINT_BASE_YAML.replace("required: true", "choices: [a.safetensors]")
    registry = valid_registry(
        *write_manifest_dirs(
            tmp_path,
            base,
            CHECKPOINT_WORKFLOWS_YAML,
            {f"{CHECKPOINT_WORKFLOW_ID}.json": CHECKPOINT_GRAPH},
        )
    )
    assert "listed files only" in _problem(registry, {"url": "https://x.example/b.safetensors"})


def test_a_parameter_not_bound_to_a_loader_takes_no_url(tmp_path: Path):
    registry = write_image_manifests(tmp_path)
    assert registry.get(INVERT_WORKFLOW_ID).model_folders() == {}


def test_the_json_schema_offers_the_url_object(registry: ManifestRegistry):
    schema = registry.get(CHECKPOINT_WORKFLOW_ID).json_schema()["properties"]["checkpoint"]
    shapes = schema["anyOf"]
    assert {"type": "string"} in shapes
    assert any(s.get("required") == ["url"] for s in shapes)
    assert schema["description"]
