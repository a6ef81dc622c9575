"""GET /workflows shows each workflow's parameters and JSON Schema, and manifest load errors."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from temporalio.client import Client

from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.settings import Settings
from manifests.registry import DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR


async def test_shipped_workflows_are_listed_with_schemas(http: httpx.AsyncClient) -> None:
    body = (await http.get("/workflows")).json()
    by_id = {w["id"]: w for w in body["workflows"]}
    assert {"flux_wavespeed", "sd15_txt2img", "smoke_image"} <= set(by_id)
    flux = by_id["flux_wavespeed"]
    assert flux["params_schema"]["properties"]["steps"]["type"] == "integer"
    assert "prompt" in flux["params_schema"]["required"]
    assert list(flux["parameters"])[:3] == ["prompt", "model", "steps"]
    assert body["errors"] == []


async def test_one_workflow_by_id(http: httpx.AsyncClient) -> None:
    response = await http.get("/workflows/smoke_image")
    assert response.status_code == 200
    assert set(response.json()["params_schema"]["properties"]) >= {"width", "height"}


async def test_unknown_workflow_is_404_listing_the_known(http: httpx.AsyncClient) -> None:
    response = await http.get("/workflows/nope")
    assert response.status_code == 404
    assert "smoke_image" in response.json()["detail"][0]["msg"]


async def test_openapi_documents_each_workflows_parameters(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    body = document["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["discriminator"]["propertyName"] == "workflow_id"
    schemas = document["components"]["schemas"]
    assert schemas["Params_flux_wavespeed"]["properties"]["lora_strength"]["type"] == "number"
    assert schemas["Generate_smoke_image"]["properties"]["workflow_id"]["const"] == "smoke_image"


@pytest_asyncio.fixture
async def broken_manifests_api(
    tmp_path: Path, temporal_client: Client
) -> AsyncIterator[tuple[str, Path]]:
    manifests = tmp_path / "manifests"
    workflows = tmp_path / "workflows"
    shutil.copytree(
        DEFAULT_MANIFESTS_DIR, manifests, ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    shutil.copytree(DEFAULT_WORKFLOWS_DIR, workflows)
    settings = Settings(
        data_dir=tmp_path / "data", manifests_dir=manifests, workflows_dir=workflows
    )
    app = create_app(settings, temporal_client=temporal_client)
    async with serve_in_background(app) as url:
        yield url, manifests


async def test_broken_manifest_shows_its_error_while_the_others_serve(
    broken_manifests_api: tuple[str, Path],
) -> None:
    url, manifests = broken_manifests_api
    with (manifests / "workflows.yaml").open("a") as f:
        f.write("\nbroken_flow:\n  workflow_file: missing.json\n  parameters: [width]\n")
    async with httpx.AsyncClient(base_url=url) as http:
        body = (await http.get("/workflows")).json()
        assert "smoke_image" in {w["id"] for w in body["workflows"]}
        assert any(e["workflow"] == "broken_flow" for e in body["errors"])
        assert any("missing.json" in e["text"] for e in body["errors"])
        document = (await http.get("/openapi.json")).json()
        assert "Params_smoke_image" in document["components"]["schemas"]


async def test_added_workflow_appears_in_docs_without_restart(
    broken_manifests_api: tuple[str, Path],
) -> None:
    url, manifests = broken_manifests_api
    with (manifests / "workflows.yaml").open("a") as f:
        f.write(
            "\nsmoke_copy:\n  workflow_file: smoke_image.json\n  description: a copy\n"
            "  parameters: [width, height]\n"
            "  overrides:\n    width: {targets: [{node: Empty Image, input: width}]}\n"
            "    height: {targets: [{node: Empty Image, input: height}]}\n"
        )
    async with httpx.AsyncClient(base_url=url) as http:
        listing = (await http.get("/workflows")).json()
        assert "smoke_copy" in {w["id"] for w in listing["workflows"]}, listing["errors"]
        document = (await http.get("/openapi.json")).json()
        assert "Params_smoke_copy" in document["components"]["schemas"]


async def test_every_run_option_of_the_manifest_is_shown(
    broken_manifests_api: tuple[str, Path],
) -> None:
    url, manifests = broken_manifests_api
    with (manifests / "workflows.yaml").open("a") as f:
        f.write(
            "\nsmoke_tuned:\n  workflow_file: smoke_image.json\n"
            "  parameters: [width, height]\n"
            "  overrides:\n    width: {targets: [{node: Empty Image, input: width}]}\n"
            "    height: {targets: [{node: Empty Image, input: height}]}\n"
            "  timeout: 42\n  pool: tuned-pool\n  retries: 4\n  outputs: [Save Image]\n"
            "  previews: true\n  stall_timeout: 7.5\n"
        )
    async with httpx.AsyncClient(base_url=url) as http:
        listing = (await http.get("/workflows")).json()
        one = (await http.get("/workflows/smoke_tuned")).json()
    listed = {w["id"]: w for w in listing["workflows"]}
    assert listed["smoke_tuned"] == one, listing["errors"]
    options = {k: one[k] for k in ("pool", "timeout_seconds", "max_attempts", "previews")}
    assert options == {
        "pool": "tuned-pool",
        "timeout_seconds": 42,
        "max_attempts": 5,
        "previews": True,
    }
    assert one["stall_timeout"] == 7.5
    assert one["outputs"] == ["3"]  # the id of the node titled "Save Image"
    assert listed["smoke_image"]["previews"] is False
    assert listed["smoke_image"]["stall_timeout"] is None
    assert listed["smoke_image"]["outputs"] is None


async def test_an_exp_graph_without_an_entry_is_listed_as_experimental(
    broken_manifests_api: tuple[str, Path],
) -> None:
    url, manifests = broken_manifests_api
    workflows = manifests.parent / "workflows"
    shutil.copy(workflows / "sd15_txt2img.json", workflows / "exp_sd15_variant.json")
    async with httpx.AsyncClient(base_url=url) as http:
        listing = (await http.get("/workflows")).json()
        one = (await http.get("/workflows/exp_sd15_variant")).json()
    listed = {w["id"]: w for w in listing["workflows"]}
    assert listed["exp_sd15_variant"] == one, listing["errors"]
    assert one["experimental"] is True
    assert "prompt" in one["params_schema"]["properties"]
    assert "required" not in one["params_schema"]
    assert listed["sd15_txt2img"]["experimental"] is False
