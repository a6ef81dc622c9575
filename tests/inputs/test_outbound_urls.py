"""The outbound-URL policy shared by webhooks and image downloads, and the GPU worker's own check at
download time (it does not trust that the API checked)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from activities.generation.image_uploads import ImageInputError, decode_base64_image, fetch_image
from activities.io.outbound_urls import UrlRefused, check_url, pinned_request
from tests.support.images import solid_png
from tests.support.loopback_http import serve_on_loopback


@pytest_asyncio.fixture
async def local_server() -> AsyncIterator[tuple[int, list[str]]]:
    """Serves a PNG at any path and records each request's Host header."""
    hosts: list[str] = []
    png = solid_png((1, 2, 3))

    async def serve(request: web.Request) -> web.Response:
        hosts.append(request.headers.get("Host", ""))
        if request.path == "/big":
            return web.Response(body=b"\0" * 5000, content_type="image/png")
        if request.path == "/redirect-to-unspecified":
            raise web.HTTPFound(f"http://0.0.0.0:{request.url.port}/a.png")
        if request.path == "/redirect":
            raise web.HTTPFound("/a.png")
        return web.Response(body=png, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    async with serve_on_loopback(app) as port:
        yield port, hosts


async def test_public_address_passes():
    checked = await check_url("https://93.184.215.14/image.png", allow_private=False)
    assert checked.addresses == (ipaddress.ip_address("93.184.215.14"),)
    assert checked.port == 443


async def test_loopback_passes_only_when_allowed():
    with pytest.raises(UrlRefused, match="loopback"):
        await check_url("http://localhost:8080/x", allow_private=False)
    checked = await check_url("http://localhost:8080/x", allow_private=True)
    assert all(address.is_loopback for address in checked.addresses)


async def test_unspecified_address_is_refused_even_when_private_ones_are_allowed():
    with pytest.raises(UrlRefused, match="unspecified"):
        await check_url("http://0.0.0.0/x", allow_private=True)


async def test_credentials_in_the_url_are_refused():
    with pytest.raises(UrlRefused, match="credentials"):
        await check_url("https://user:secret@example.com/x", allow_private=True)


async def test_request_goes_to_the_checked_address_with_the_original_host(
    local_server: tuple[int, list[str]],
):
    port, hosts = local_server
    checked = await check_url(f"http://localhost:{port}/a.png", allow_private=True)
    async with httpx.AsyncClient(trust_env=False) as http:
        request = pinned_request(http, "GET", checked)
        response = await http.send(request)
    assert response.status_code == 200
    assert request.url.host == str(checked.addresses[0])  # no second DNS lookup
    assert hosts == [f"localhost:{port}"]


async def test_gpu_worker_refuses_a_loopback_url_its_own_policy_forbids(
    local_server: tuple[int, list[str]],
):
    port, hosts = local_server
    with pytest.raises(ImageInputError) as refused:
        await fetch_image(f"http://127.0.0.1:{port}/a.png", allow_private=False, limit=10_000)
    assert refused.value.type == "ImageInputRefused"
    assert hosts == []  # refused before connecting


async def test_redirect_is_followed_to_an_allowed_address(local_server: tuple[int, list[str]]):
    port, hosts = local_server
    data = await fetch_image(f"http://127.0.0.1:{port}/redirect", allow_private=True, limit=10_000)
    assert data.startswith(b"\x89PNG")
    assert len(hosts) == 2


async def test_redirect_target_is_checked_like_the_first_hop(local_server: tuple[int, list[str]]):
    port, hosts = local_server
    with pytest.raises(ImageInputError) as refused:
        await fetch_image(
            f"http://127.0.0.1:{port}/redirect-to-unspecified", allow_private=True, limit=10_000
        )
    assert refused.value.type == "ImageInputRefused"
    assert len(hosts) == 1  # the redirect target was never contacted


async def test_download_over_the_size_limit_is_refused(local_server: tuple[int, list[str]]):
    port, _hosts = local_server
    with pytest.raises(ImageInputError) as refused:
        await fetch_image(f"http://127.0.0.1:{port}/big", allow_private=True, limit=4096)
    assert refused.value.type == "ImageInputTooLarge"


def test_base64_with_line_breaks_and_data_uri_decode():
    png = solid_png((9, 9, 9))
    encoded = base64.b64encode(png).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    assert decode_base64_image(wrapped, 10_000) == png
    assert decode_base64_image("data:image/png;base64," + encoded, 10_000) == png


def test_base64_size_is_checked_before_decoding_everything():
    huge = "A" * 4_000_000
    with pytest.raises(ImageInputError) as refused:
        decode_base64_image(huge, 1024)
    assert refused.value.type == "ImageInputTooLarge"
