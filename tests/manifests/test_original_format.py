"""The original service's manifest format loads unchanged: `type: file`, `map_to` titles,
`special_handlers`, `overrides`, comments and Unicode; and where we are stricter, the error says
how to fix the manifest."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from manifests.definitions import WorkflowManifest
from manifests.errors import ParamsInvalid
from manifests.image_inputs import ImageFromUrl, upload_placeholder
from manifests.loading import load_manifests
from manifests.registry import ManifestRegistry
from manifests.render import render_prompt
from tests.support.graphs import SMOKE_GRAPH
from tests.support.manifests import ManifestDirs, fixture_dirs

ORIGINAL = fixture_dirs("original_format")


def workflow(workflow_id: str) -> WorkflowManifest:
    return ManifestRegistry(*ORIGINAL, experimental=True).get(workflow_id)


def test_the_original_format_loads_without_a_single_error() -> None:
    result = load_manifests(*ORIGINAL)
    assert [str(e) for e in result.errors] == []
    assert set(result.workflows) == {"sketch_default", "sketch_restyle", "exp_sketch_wide"}


def test_map_to_titles_write_into_the_titled_nodes_value() -> None:
    rendered = render_prompt(
        workflow("sketch_default"),
        {"prompt": "a harbour", "steps": 30, "seed": 7},
        revision="r",
    )
    titled = {node["_meta"]["title"]: node for node in rendered.prompt.values()}
    assert titled["steps"]["inputs"]["value"] == 30
    assert titled["seed"]["inputs"]["value"] == 7
    assert titled["model"]["inputs"]["value"] == "sketchbook-v3.safetensors"


def test_the_special_handler_draws_the_seed_in_its_range() -> None:
    rendered = render_prompt(
        workflow("sketch_default"), {"prompt": "x"}, revision="r", rng=random.Random(3)
    )
    seed = rendered.params["seed"]
    assert isinstance(seed, int) and 0 <= seed <= 2**64 - 1


def test_an_override_makes_the_prompt_required() -> None:
    with pytest.raises(ParamsInvalid) as invalid:
        render_prompt(workflow("sketch_default"), {}, revision="r")
    assert [(e.param, e.reason) for e in invalid.value.errors] == [("prompt", "required")]


def test_a_file_parameter_takes_a_name_in_comfyuis_input_directory() -> None:
    rendered = render_prompt(
        workflow("sketch_restyle"), {"prompt": "x", "input_image": "street.jpg"}, revision="r"
    )
    assert rendered.prompt["50"]["inputs"]["value"] == "street.jpg"
    assert rendered.image_inputs == []


def test_a_file_parameter_takes_a_url_the_gpu_worker_uploads() -> None:
    url = "https://media.example.com/clip.mp4"
    rendered = render_prompt(
        workflow("sketch_restyle"), {"prompt": "x", "input_image": {"url": url}}, revision="r"
    )
    assert rendered.prompt["50"]["inputs"]["value"] == upload_placeholder("input_image")
    (item,) = rendered.image_inputs
    assert (item.source, item.targets) == (ImageFromUrl(url), ["50.value"])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must name a file"),
        ("../secrets.txt", "inside ComfyUI's input directory"),
        (12, "expected a file name"),
        ({"url": "https://x/a.wav", "base64": "AA=="}, "exactly one"),
    ],
)
def test_a_bad_file_value_is_refused_with_the_reason(value: Any, reason: str) -> None:
    with pytest.raises(ParamsInvalid) as invalid:
        render_prompt(
            workflow("sketch_restyle"), {"prompt": "x", "input_image": value}, revision="r"
        )
    (error,) = invalid.value.errors
    assert error.param == "input_image" and reason in error.reason


def test_a_file_parameters_schema_offers_a_name_a_url_or_base64() -> None:
    schema = workflow("sketch_restyle").json_schema()["properties"]["input_image"]
    shapes = schema["anyOf"]
    assert shapes[0] == {"type": "string"}
    assert {tuple(s.get("required", [])) for s in shapes[1:]} == {("url",), ("base64",)}


def test_unicode_and_comments_survive_loading() -> None:
    manifest = workflow("sketch_default")
    titles = {node["_meta"]["title"] for node in manifest.template.values()}
    assert "Échantillonneur" in titles
    assert manifest.lora_prompt is not None
    ukiyo = manifest.lora_prompt.catalogue["Ukiyo-e-Prints.safetensors"]
    assert ukiyo.prefix == "浮世絵 style" and ukiyo.suffix is None  # the suffix is commented out


# --- where we are stricter than the original, the error says how to fix it


def base_error(make_dirs: Callable[..., ManifestDirs], definition: dict[str, Any]) -> str:
    dirs = make_dirs({"n": definition}, "# no workflows\n", {})
    (error,) = load_manifests(*dirs).errors
    return error.message


def test_a_random_default_without_a_random_rule_says_which_key_to_add(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    message = base_error(make_dirs, {"type": "integer", "default": "random", "map_to": "n"})
    assert "add `random: true`" in message
    assert "special_handlers: [{value: random, action: generate_random_int" in message


def test_a_quoted_number_default_says_to_write_it_without_quotes(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    message = base_error(make_dirs, {"type": "integer", "default": "20", "map_to": "n"})
    assert "write it without quotes: `default: 20`" in message


def test_a_map_to_title_missing_from_the_graph_says_what_to_do(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    dirs = make_dirs(
        {"width": {"type": "integer", "default": 64, "map_to": "width"}},
        {"w": {"workflow_file": "smoke.json", "parameters": ["width"]}},
        {"smoke.json": SMOKE_GRAPH},
    )
    (error,) = load_manifests(*dirs).errors
    assert error.key == "parameters.width.map_to"
    assert "title the node that takes 'width' so in ComfyUI" in error.message


def test_a_map_to_node_without_a_value_input_points_to_targets(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    dirs = make_dirs(
        {"width": {"type": "integer", "default": 64, "map_to": "Empty Image"}},
        {"w": {"workflow_file": "smoke.json", "parameters": ["width"]}},
        {"smoke.json": SMOKE_GRAPH},
    )
    (error,) = load_manifests(*dirs).errors
    assert "use targets: [{node: 'Empty Image', input: <one of the inputs>}]" in error.message


def test_an_override_of_an_unlisted_parameter_says_how_to_list_it(
    make_dirs: Callable[..., ManifestDirs],
) -> None:
    dirs = make_dirs(
        {"width": {"type": "integer", "default": 64, "targets": {"node": "1", "input": "width"}}},
        {"w": {"workflow_file": "smoke.json", "parameters": [], "overrides": {"width": {}}}},
        {"smoke.json": SMOKE_GRAPH},
    )
    (error,) = load_manifests(*dirs).errors
    assert "add `- width` to the workflow's parameters" in error.message
