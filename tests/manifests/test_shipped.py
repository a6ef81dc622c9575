"""Every shipped manifest and graph loads cleanly and renders with its defaults."""

from __future__ import annotations

import random

import pytest

from manifests.registry import DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR, ManifestRegistry

SHIPPED = ["flux_wavespeed", "sd15_txt2img", "smoke_image"]


@pytest.fixture(scope="module")
def shipped() -> ManifestRegistry:
    return ManifestRegistry(DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR)


def test_every_shipped_manifest_loads_without_errors(shipped: ManifestRegistry) -> None:
    snapshot = shipped.snapshot()
    assert [str(e) for e in snapshot.errors] == []
    assert sorted(snapshot.workflows) == SHIPPED


@pytest.mark.parametrize("workflow_id", SHIPPED)
def test_every_shipped_workflow_renders_with_only_its_required_params(
    shipped: ManifestRegistry, workflow_id: str
) -> None:
    manifest = shipped.get(workflow_id)
    params = {name: "a test prompt" for name, d in manifest.parameters.items() if d.required}
    rendered = shipped.render(workflow_id, params, rng=random.Random(0))
    assert rendered.revision == shipped.snapshot().revision
    assert set(rendered.params) == set(manifest.parameters)


# The parameter table of the original spec (§3.2): name -> (type, default); prompt is required.
FLUX_SPEC_TABLE = {
    "prompt": ("string", None),
    "model": ("string", "flux1-schnell-Q4_K_S.gguf"),
    "steps": ("integer", 20),
    "seed": ("integer", "random"),
    "lora": ("string", "None"),
    "lora_strength": ("float", 1.0),
    "width": ("integer", 1024),
    "height": ("integer", 1024),
    "FBC_optimize": ("boolean", True),
}


def test_flux_wavespeed_exposes_exactly_the_spec_parameter_table(shipped: ManifestRegistry) -> None:
    manifest = shipped.get("flux_wavespeed")
    table = {name: (d.type, d.default) for name, d in manifest.parameters.items()}
    assert table == FLUX_SPEC_TABLE
    assert [n for n, d in manifest.parameters.items() if d.required] == ["prompt"]


def test_smoke_image_uses_only_weightless_stock_image_nodes(shipped: ManifestRegistry) -> None:
    classes = {node["class_type"] for node in shipped.get("smoke_image").template.values()}
    assert classes <= {"EmptyImage", "ImageInvert", "SaveImage"}
