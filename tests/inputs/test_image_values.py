"""Image parameter values in manifests: which shapes validate, and how rendering leaves the upload
to the GPU worker (a placeholder in the graph, the source listed apart)."""

from __future__ import annotations

from pathlib import Path

import pytest

from manifests.errors import ParamsInvalid
from manifests.image_inputs import ImageFromStore, ImageFromUrl, upload_placeholder
from manifests.render import render_prompt
from tests.support.manifests import write_image_manifests


@pytest.fixture
def manifest(tmp_path: Path):
    return write_image_manifests(tmp_path).get("invert_image")


def test_file_name_is_written_into_load_image(manifest):
    rendered = render_prompt(manifest, {"image": "sub/cat.png"}, revision="r")
    assert rendered.prompt["1"]["inputs"]["image"] == "sub/cat.png"
    assert rendered.image_inputs == []


def test_url_leaves_a_placeholder_and_lists_the_source(manifest):
    rendered = render_prompt(
        manifest, {"image": {"url": "https://example.com/cat.png"}}, revision="r"
    )
    assert rendered.prompt["1"]["inputs"]["image"] == upload_placeholder("image")
    (item,) = rendered.image_inputs
    assert item.param == "image"
    assert item.source == ImageFromUrl("https://example.com/cat.png")
    assert item.targets == ["1.image"]
    assert rendered.params["image"] == {"url": "https://example.com/cat.png"}


def test_stored_input_reference_renders_like_a_url(manifest):
    name = "a" * 64 + ".png"
    rendered = render_prompt(manifest, {"image": {"input_file": name}}, revision="r")
    assert rendered.image_inputs[0].source == ImageFromStore(name)


@pytest.mark.parametrize(
    ("image", "expected", "field"),
    [
        (5, "expected a file name", None),
        ({}, "exactly one", None),
        ({"url": 5}, "non-empty string", "url"),
        ({"url": "https://x/a.png", "filename": "../etc/passwd"}, "plain file name", "filename"),
        ({"input_file": "../../secret"}, "stored by the API", "input_file"),
        ({"url": "https://x/a.png", "size": 1}, "unknown key 'size'", "size"),
        ("../outside.png", "inside ComfyUI's input directory", None),
    ],
)
def test_bad_image_values_are_refused_naming_the_reason_and_the_key(
    manifest, image, expected, field
):
    with pytest.raises(ParamsInvalid) as invalid:
        render_prompt(manifest, {"image": image}, revision="r")
    (error,) = invalid.value.errors
    assert (error.param, error.field) == ("image", field)
    assert expected in error.reason
