"""Rendering writes exactly the resolved values into a copy of the template, and nothing else."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manifests.definitions import SEED_MAX, WorkflowManifest
from manifests.errors import ParamsInvalid
from manifests.registry import ManifestRegistry
from manifests.render import is_link, render_prompt
from tests.support.manifests import fixture_dirs

FLUX = ManifestRegistry().get("flux_wavespeed")
SMOKE = ManifestRegistry().get("smoke_image")

flux_params = st.fixed_dictionaries(
    {"prompt": st.text(max_size=50)},
    optional={
        "steps": st.integers(1, 10000),
        "seed": st.one_of(st.just("random"), st.integers(0, SEED_MAX)),
        "lora": st.sampled_from(["None", "", "style.safetensors"]),
        "lora_strength": st.floats(-100, 100),
        "width": st.integers(16, 16384),
        "height": st.integers(16, 16384),
        "FBC_optimize": st.booleans(),
        "model": st.sampled_from(["flux1-dev-Q4_K_S.gguf", "flux1-schnell-Q4_K_S.gguf"]),
    },
)


def rendered_graph(manifest: WorkflowManifest, params: dict[str, Any], seed: int = 0):
    return render_prompt(manifest, params, revision="r1", rng=random.Random(seed))


@settings(max_examples=60)
@given(flux_params)
def test_render_never_mutates_the_template(params: dict[str, Any]) -> None:
    before = copy.deepcopy(FLUX.template)
    rendered = rendered_graph(FLUX, params)
    rendered.prompt["9"]["inputs"]["steps"] = -1  # a consumer editing its copy must not leak back
    assert FLUX.template == before


@settings(max_examples=60)
@given(flux_params)
def test_rendered_graph_holds_exactly_the_resolved_values(params: dict[str, Any]) -> None:
    rendered = rendered_graph(FLUX, params)
    graph = rendered.prompt
    bound = {}
    for name, refs in FLUX.bindings.items():
        for ref in refs:
            if ref.node_id in graph:
                assert graph[ref.node_id]["inputs"][ref.input] == rendered.params[name]
                bound[(ref.node_id, ref.input)] = name
    # Every other literal input is the template's.
    for node_id, node in graph.items():
        for input_name, value in node["inputs"].items():
            if (node_id, input_name) not in bound and not is_link(value):
                assert value == FLUX.template[node_id]["inputs"][input_name]


@settings(max_examples=60)
@given(flux_params)
def test_every_link_of_a_rendered_graph_points_at_a_node_in_it(params: dict[str, Any]) -> None:
    graph = rendered_graph(FLUX, params).prompt
    for node in graph.values():
        for value in node["inputs"].values():
            if is_link(value):
                assert value[0] in graph


@given(st.integers(min_value=0))
def test_random_seed_is_drawn_within_comfyuis_range_and_reported(rng_seed: int) -> None:
    rendered = rendered_graph(FLUX, {"prompt": "p"}, seed=rng_seed)
    seed = rendered.params["seed"]
    assert isinstance(seed, int) and 0 <= seed <= SEED_MAX
    assert rendered.prompt["9"]["inputs"]["seed"] == seed


def test_same_generator_state_gives_the_same_seed() -> None:
    first = rendered_graph(FLUX, {"prompt": "p"}, seed=7).params["seed"]
    assert rendered_graph(FLUX, {"prompt": "p"}, seed=7).params["seed"] == first


def test_default_random_seeds_differ_between_renders() -> None:
    seeds = {render_prompt(FLUX, {"prompt": "p"}, revision="r").params["seed"] for _ in range(5)}
    assert len(seeds) > 1


def test_explicit_seed_is_used_as_given() -> None:
    rendered = rendered_graph(FLUX, {"prompt": "p", "seed": SEED_MAX})
    assert rendered.prompt["9"]["inputs"]["seed"] == SEED_MAX


def test_spec_special_handler_draws_within_its_own_range() -> None:
    manifest = ManifestRegistry(*fixture_dirs("original_convention")).get("primitives")
    for rng_seed in range(50):
        rendered = rendered_graph(manifest, {"prompt": "p"}, seed=rng_seed)
        assert 0 <= rendered.params["seed"] <= 2**32 - 1


def test_map_to_sets_the_value_of_the_node_titled_after_the_parameter() -> None:
    manifest = ManifestRegistry(*fixture_dirs("original_convention")).get("primitives")
    graph = rendered_graph(manifest, {"prompt": "a fox", "steps": 12}).prompt
    assert graph["10"]["inputs"]["value"] == "a fox"
    assert graph["12"]["inputs"]["value"] == 12


def test_lora_none_removes_the_loader_and_rewires_model_and_clip() -> None:
    graph = rendered_graph(FLUX, {"prompt": "p", "lora": "None"}).prompt
    assert "3" not in graph
    assert graph["4"]["inputs"]["model"] == ["1", 0]  # FBCache now reads the GGUF model
    assert graph["5"]["inputs"]["clip"] == ["2", 0]  # the text encoder reads the CLIP loader


def test_named_lora_keeps_the_loader_with_its_file_and_strength() -> None:
    params = {"prompt": "p", "lora": "style.safetensors", "lora_strength": 0.8}
    graph = rendered_graph(FLUX, params).prompt
    assert graph["3"]["inputs"]["lora_name"] == "style.safetensors"
    assert graph["3"]["inputs"]["strength_model"] == 0.8
    assert graph["3"]["inputs"]["strength_clip"] == 0.8
    assert graph["4"]["inputs"]["model"] == ["3", 0]


def test_fbc_optimize_false_removes_first_block_cache() -> None:
    params = {"prompt": "p", "FBC_optimize": False, "lora": "x.safetensors"}
    graph = rendered_graph(FLUX, params).prompt
    assert "4" not in graph and graph["9"]["inputs"]["model"] == ["3", 0]


def test_two_bypasses_in_a_chain_connect_the_sampler_to_the_model_loader() -> None:
    graph = rendered_graph(FLUX, {"prompt": "p", "FBC_optimize": False}).prompt
    assert "3" not in graph and "4" not in graph
    assert graph["9"]["inputs"]["model"] == ["1", 0]


def test_smoke_invert_false_saves_the_empty_image_directly() -> None:
    graph = rendered_graph(SMOKE, {"invert": False, "color": 0xFF0000}).prompt
    assert set(graph) == {"1", "3"}
    assert graph["3"]["inputs"]["images"] == ["1", 0]
    assert graph["1"]["inputs"]["color"] == 0xFF0000


def test_render_raises_params_invalid_for_bad_params() -> None:
    with pytest.raises(ParamsInvalid) as caught:
        rendered_graph(SMOKE, {"width": "64"})
    assert caught.value.errors[0].param == "width"


def test_rendered_prompt_records_workflow_and_revision() -> None:
    rendered = render_prompt(SMOKE, {}, revision="abc123")
    assert (rendered.workflow_id, rendered.revision) == ("smoke_image", "abc123")


def test_resolved_params_include_every_default() -> None:
    rendered = rendered_graph(SMOKE, {})
    assert rendered.params == {
        "width": 64,
        "height": 64,
        "color": 0,
        "invert": True,
        "filename_prefix": "smoke",
    }
