"""Each workflow's JSON Schema mirrors its manifest."""

from __future__ import annotations

from manifests.definitions import SEED_MAX
from manifests.registry import ManifestRegistry

FLUX = ManifestRegistry().get("flux_wavespeed")
SD15 = ManifestRegistry().get("sd15_txt2img")


def test_schema_is_a_closed_object_with_required_list() -> None:
    schema = FLUX.json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["prompt"]
    assert list(schema["properties"]) == list(FLUX.parameters)


def test_schema_types_follow_parameter_types() -> None:
    properties = FLUX.json_schema()["properties"]
    assert properties["steps"]["type"] == "integer"
    assert properties["lora_strength"]["type"] == "number"
    assert properties["FBC_optimize"]["type"] == "boolean"
    assert properties["prompt"]["type"] == "string"


def test_schema_carries_bounds_defaults_lengths_and_descriptions() -> None:
    properties = FLUX.json_schema()["properties"]
    assert (properties["width"]["minimum"], properties["width"]["maximum"]) == (16, 16384)
    assert properties["width"]["default"] == 1024
    assert properties["prompt"]["maxLength"] == FLUX.parameters["prompt"].max_length
    assert properties["model"]["description"] == FLUX.parameters["model"].description


def test_seed_schema_accepts_an_integer_or_random() -> None:
    seed = FLUX.json_schema()["properties"]["seed"]
    assert seed["anyOf"] == [
        {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
        {"const": "random"},
    ]
    assert seed["default"] == "random"


def test_choices_become_an_enum() -> None:
    sampler = SD15.json_schema()["properties"]["sampler"]
    assert sampler["enum"] == SD15.parameters["sampler"].choices
    assert "euler" in sampler["enum"]


def test_required_parameter_has_no_default_in_the_schema() -> None:
    assert "default" not in FLUX.json_schema()["properties"]["prompt"]
