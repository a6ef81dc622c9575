"""What POST /generate refuses in image inputs and callback URLs, before anything starts: each
refusal a 422 naming the field and the reason. The API here has no workers."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.images import solid_png
from tests.support.manifests import INVERT_WORKFLOW_ID as WORKFLOW_ID
from tests.support.manifests import write_image_manifests
from tests.support.stack import GenerationStack, generation_stack

MAX_IMAGE_BYTES = 4096


@pytest_asyncio.fixture(scope="module")
async def refusing_api(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    """Default policy: no private, loopback or link-local targets."""
    base = tmp_path_factory.mktemp("inputs-api")
    async with generation_stack(
        temporal_client,
        base,
        write_image_manifests(base),
        control_worker=None,
        max_image_bytes=MAX_IMAGE_BYTES,
        allow_private_image_urls=False,
        allow_private_callback_urls=False,
    ) as stack:
        yield stack


@pytest_asyncio.fixture
async def http(refusing_api: GenerationStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=refusing_api.url, timeout=30) as client:
        yield client


async def _refusal(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post("/generate", json={"workflow_id": WORKFLOW_ID, **body})
    assert response.status_code == 422, response.text
    (entry,) = response.json()["detail"]
    return entry


async def _image_refusal(http: httpx.AsyncClient, image: Any) -> str:
    """The refusals' messages, each naming `params.image` (and the key of an object value)."""
    response = await http.post(
        "/generate", json={"workflow_id": WORKFLOW_ID, "params": {"image": image}}
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    keys = list(image) if isinstance(image, dict) else []
    for entry in detail:
        loc = entry["loc"]
        assert loc[:3] == ["body", "params", "image"], entry
        assert len(loc) == 3 or (len(loc) == 4 and loc[3] in keys), entry
    return "; ".join(entry["msg"] for entry in detail)


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://x/"])
async def test_image_url_scheme_other_than_http_is_refused(http: httpx.AsyncClient, url: str):
    message = await _image_refusal(http, {"url": url})
    assert "scheme" in message and "http" in message


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8188/view?filename=x.png", "loopback"),
        ("http://localhost/a.png", "loopback"),
        ("http://[::1]/a.png", "loopback"),
        ("http://10.1.2.3/a.png", "private"),
        ("http://192.168.0.10/a.png", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::ffff:10.0.0.1]/a.png", "private"),
    ],
)
async def test_image_url_to_a_non_public_address_is_refused(
    http: httpx.AsyncClient, url: str, kind: str
):
    message = await _image_refusal(http, {"url": url})
    assert kind in message


async def test_image_url_whose_host_does_not_resolve_is_refused(http: httpx.AsyncClient):
    message = await _image_refusal(http, {"url": "http://no-such-host.invalid/a.png"})
    assert "does not resolve" in message


async def test_base64_that_does_not_decode_is_refused(http: httpx.AsyncClient):
    message = await _image_refusal(http, {"base64": "not base64 at all!"})
    assert "base64" in message


async def test_base64_over_the_size_limit_is_refused(http: httpx.AsyncClient):
    data = base64.b64encode(b"\0" * (MAX_IMAGE_BYTES + 1)).decode()
    message = await _image_refusal(http, {"base64": data})
    assert str(MAX_IMAGE_BYTES) in message


async def test_data_uri_that_is_not_base64_is_refused(http: httpx.AsyncClient):
    message = await _image_refusal(http, {"base64": "data:image/png,rawbytes"})
    assert "base64" in message


async def test_image_object_with_two_sources_is_refused(http: httpx.AsyncClient):
    message = await _image_refusal(http, {"url": "https://example.com/a.png", "base64": "AAAA"})
    assert "exactly one" in message


async def test_image_object_with_an_unknown_key_is_refused(http: httpx.AsyncClient):
    message = await _image_refusal(http, {"path": "/etc/passwd"})
    assert "'path'" in message


async def test_stored_input_reference_cannot_come_from_a_client(http: httpx.AsyncClient):
    message = await _image_refusal(http, {"input_file": "0" * 64 + ".png"})
    assert "input_file" in message


async def test_base64_image_is_stored_apart_and_the_task_starts(
    http: httpx.AsyncClient, refusing_api: GenerationStack, temporal_client: Client
):
    png = solid_png((1, 2, 3))
    response = await http.post(
        "/generate",
        json={
            "workflow_id": WORKFLOW_ID,
            "params": {"image": {"base64": base64.b64encode(png).decode()}},
        },
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    handle = temporal_client.get_workflow_handle(task_id)
    try:
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        workflow_input = started.input.payloads[0].data
        assert base64.b64encode(png) not in workflow_input  # a reference, not the image
        stored = list((refusing_api.data_dir / "inputs").glob("*.png"))
        assert [path.read_bytes() for path in stored] == [png]
        assert stored[0].name.encode() in workflow_input
    finally:
        await handle.terminate(reason="test finished")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/hook", "http://127.0.0.1:9/hook", "http://10.0.0.5/hook", "nonsense"],
)
async def test_callback_url_that_is_not_a_public_http_url_is_refused(
    http: httpx.AsyncClient, url: str
):
    entry = await _refusal(http, {"params": {"image": "x.png"}, "options": {"callback_url": url}})
    assert entry["loc"] == ["body", "options", "callback_url"]
    assert entry["msg"].startswith("callback_url ")


async def test_top_level_callback_url_is_checked_and_named(http: httpx.AsyncClient):
    entry = await _refusal(
        http, {"params": {"image": "x.png"}, "callback_url": "http://169.254.169.254/"}
    )
    assert entry["loc"] == ["body", "callback_url"]
    assert "link-local" in entry["msg"]


async def test_two_different_callback_urls_are_refused(http: httpx.AsyncClient):
    entry = await _refusal(
        http,
        {
            "params": {"image": "x.png"},
            "callback_url": "https://a.example.com/hook",
            "options": {"callback_url": "https://b.example.com/hook"},
        },
    )
    assert entry["loc"] == ["body", "callback_url"]
