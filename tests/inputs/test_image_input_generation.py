"""Images given inline (base64) or by URL reach ComfyUI's LoadImage: the GPU worker uploads them to
its ComfyUI (the emulator) and the output is the inverted input."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from temporalio.client import Client

from tests.support.images import first_pixel, solid_png
from tests.support.loopback_http import serve_on_loopback
from tests.support.manifests import INVERT_WORKFLOW_ID as WORKFLOW_ID
from tests.support.manifests import write_image_manifests
from tests.support.stack import GenerationStack, generation_stack, unique
from tests.support.waiting import poll_task

DEADLINE = 60.0


@pytest_asyncio.fixture(scope="module")
async def stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    # The test's image server is on loopback: allowed by configuration, in the API and (through
    # the environment) on the GPU worker, which checks again when it downloads.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMFY_ALLOW_PRIVATE_IMAGE_URLS", "1")
        base = tmp_path_factory.mktemp("inputs-stack")
        async with generation_stack(
            temporal_client,
            base,
            write_image_manifests(base),
            gpu_workers=[unique("inputs-gpu")],
            allow_private_image_urls=True,
        ) as running:
            yield running


@pytest_asyncio.fixture
async def image_server() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    """Serves the bytes put in the returned dict at /<name>, on 127.0.0.1."""
    files: dict[str, bytes] = {}

    async def serve(request: web.Request) -> web.Response:
        data = files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    async with serve_on_loopback(app) as port:
        yield f"http://127.0.0.1:{port}", files


async def _finished(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/generate", json=body)
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    return await poll_task(
        http, task_id, lambda task: task["status"] in ("SUCCESS", "FAILURE", "CANCELLED"), DEADLINE
    )


async def _output_pixel(http: httpx.AsyncClient, task: dict[str, Any]) -> tuple[int, int, int]:
    assert task["status"] == "SUCCESS", task
    download = await http.get(task["result"]["download_url"])
    assert download.status_code == 200
    return first_pixel(download.content)


async def test_base64_image_reaches_load_image_and_is_inverted(stack: GenerationStack):
    png = solid_png((200, 30, 10))
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task = await _finished(
            http,
            {
                "workflow_id": WORKFLOW_ID,
                "params": {
                    "image": {"base64": base64.b64encode(png).decode(), "filename": "in.png"}
                },
            },
        )
        assert await _output_pixel(http, task) == (55, 225, 245)


async def test_data_uri_image_is_accepted(stack: GenerationStack):
    png = solid_png((0, 0, 0))
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task = await _finished(
            http, {"workflow_id": WORKFLOW_ID, "params": {"image": {"base64": uri}}}
        )
        assert await _output_pixel(http, task) == (255, 255, 255)


async def test_image_url_is_downloaded_by_the_gpu_worker(
    stack: GenerationStack, image_server: tuple[str, dict[str, bytes]]
):
    base, files = image_server
    files["photo.png"] = solid_png((10, 20, 30))
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task = await _finished(
            http, {"workflow_id": WORKFLOW_ID, "params": {"image": {"url": f"{base}/photo.png"}}}
        )
        assert await _output_pixel(http, task) == (245, 235, 225)
        assert task["result"]["params"]["image"] == {"url": f"{base}/photo.png"}


async def test_missing_image_url_fails_naming_the_parameter(
    stack: GenerationStack, image_server: tuple[str, dict[str, bytes]]
):
    base, _files = image_server
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task = await _finished(
            http, {"workflow_id": WORKFLOW_ID, "params": {"image": {"url": f"{base}/gone.png"}}}
        )
    assert task["status"] == "FAILURE"
    assert task["error"]["param"] == "image"
    assert "404" in task["error"]["message"]
