"""API keys (Bearer or X-API-Key) and signed, expiring download URLs."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from api.api_keys import InsecureBind, check_bind_access
from api.app import create_app
from api.cli.devstack.http_server import free_port, serve_in_background
from api.contract.signed_urls import (
    SIGNING_KEY_FILE,
    DownloadForbidden,
    UrlSigner,
    load_signing_key,
)
from api.contract.task_view import output_url
from api.settings import Settings
from tests.support.temporal import StartedTasks

KEY = "test-key-7f3a"
TASK_ID = "smoke_image-20260101-000000-acce55"
FILENAME = "smoke_00001_.png"
PNG = b"\x89PNG\r\n\x1a\n" + b"1" * 64


@pytest.fixture(scope="module")
def keyed_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("keyed-api")
    (data_dir / "outputs" / TASK_ID).mkdir(parents=True)
    (data_dir / "outputs" / TASK_ID / FILENAME).write_bytes(PNG)
    return data_dir


@pytest_asyncio.fixture(scope="module")
async def keyed(temporal_client: Client, keyed_data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An API with API keys on; requests carry no key unless a test adds one."""
    settings = Settings(data_dir=keyed_data_dir, api_keys=(KEY, "second-key"))
    app = create_app(settings, temporal_client=temporal_client)
    async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


def _signer(data_dir: Path) -> UrlSigner:
    """The signer the API uses: the key it persisted in its data dir, default TTL."""
    return UrlSigner(load_signing_key(data_dir, None), Settings().download_url_ttl_seconds)


def _path(query: str) -> str:
    return f"/tasks/{TASK_ID}/outputs/{FILENAME}?{query}"


# ---- API keys


async def test_request_without_a_key_is_401_saying_how_to_send_one(
    keyed: httpx.AsyncClient,
) -> None:
    response = await keyed.get("/workflows")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "X-API-Key" in response.json()["detail"] and "Bearer" in response.json()["detail"]


async def test_wrong_key_is_401(keyed: httpx.AsyncClient) -> None:
    response = await keyed.get("/workflows", headers={"X-API-Key": "not-a-key"})
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert detail.startswith("the API key is not valid") and "X-API-Key" in detail


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}, {"X-API-Key": "second-key"}],
)
async def test_a_configured_key_in_either_header_is_accepted(
    keyed: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await keyed.get("/workflows", headers=headers)
    assert response.status_code == 200


async def test_idempotency_keys_of_different_api_keys_never_meet(
    keyed: httpx.AsyncClient, started_tasks: StartedTasks
) -> None:
    body = {"workflow_id": "smoke_image", "params": {}}
    same = {"Idempotency-Key": "order-1"}
    first = await keyed.post("/generate", json=body, headers={**same, "X-API-Key": KEY})
    other = await keyed.post("/generate", json=body, headers={**same, "X-API-Key": "second-key"})
    started_tasks.extend([first.json()["task_id"], other.json()["task_id"]])
    assert first.status_code == other.status_code == 202
    assert first.json()["task_id"] != other.json()["task_id"]


async def test_post_generate_needs_a_key(keyed: httpx.AsyncClient) -> None:
    response = await keyed.post("/generate", json={"workflow_id": "smoke_image"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/health", "/docs", "/openapi.json"])
async def test_health_and_docs_stay_open(keyed: httpx.AsyncClient, path: str) -> None:
    response = await keyed.get(path)
    assert response.status_code == 200


async def test_ping_answers_pong_without_a_key_as_the_original_did(
    keyed: httpx.AsyncClient,
) -> None:
    # The original service had no keys; its clients start by pinging, and a probe reveals nothing.
    response = await keyed.get("/ping")
    assert response.status_code == 200 and response.json() == {"message": "pong"}


async def test_without_configured_keys_the_api_is_open(http: httpx.AsyncClient) -> None:
    response = await http.get("/workflows")
    assert response.status_code == 200


# ---- signed download URLs


async def test_signed_url_downloads_without_a_key(
    keyed: httpx.AsyncClient, keyed_data_dir: Path
) -> None:
    signed = _signer(keyed_data_dir).sign(TASK_ID, FILENAME)
    response = await keyed.get(_path(signed.query()))
    assert response.status_code == 200
    assert response.content == PNG


async def test_expired_url_is_403_saying_it_expired(
    keyed: httpx.AsyncClient, keyed_data_dir: Path
) -> None:
    signer = _signer(keyed_data_dir)
    signed = signer.sign(TASK_ID, FILENAME, now=time.time() - signer.ttl_seconds - 5)
    response = await keyed.get(_path(signed.query()))
    assert response.status_code == 403
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["query", "expires"] and "expired" in entry["msg"]


async def test_tampered_signature_is_403(keyed: httpx.AsyncClient, keyed_data_dir: Path) -> None:
    signed = _signer(keyed_data_dir).sign(TASK_ID, FILENAME)
    flipped = ("0" if signed.sig[0] != "0" else "1") + signed.sig[1:]
    response = await keyed.get(_path(f"expires={signed.expires}&sig={flipped}"))
    assert response.status_code == 403
    assert response.json()["detail"][0]["loc"] == ["query", "sig"]


async def test_extending_the_expiry_breaks_the_signature(
    keyed: httpx.AsyncClient, keyed_data_dir: Path
) -> None:
    signed = _signer(keyed_data_dir).sign(TASK_ID, FILENAME)
    response = await keyed.get(_path(f"expires={signed.expires + 3600}&sig={signed.sig}"))
    assert response.status_code == 403


async def test_signature_of_one_file_does_not_open_another(
    keyed: httpx.AsyncClient, keyed_data_dir: Path
) -> None:
    signed = _signer(keyed_data_dir).sign(TASK_ID, "other.png")
    response = await keyed.get(_path(signed.query()))
    assert response.status_code == 403


async def test_download_without_signature_needs_the_key(keyed: httpx.AsyncClient) -> None:
    without = await keyed.get(f"/tasks/{TASK_ID}/outputs/{FILENAME}")
    with_key = await keyed.get(f"/tasks/{TASK_ID}/outputs/{FILENAME}", headers={"X-API-Key": KEY})
    assert without.status_code == 401
    assert with_key.status_code == 200 and with_key.content == PNG


async def test_head_follows_the_download_rules(
    keyed: httpx.AsyncClient, keyed_data_dir: Path
) -> None:
    path = f"/tasks/{TASK_ID}/outputs/{FILENAME}"
    signer = _signer(keyed_data_dir)
    expired = signer.sign(TASK_ID, FILENAME, now=time.time() - signer.ttl_seconds - 5)
    assert (await keyed.head(path)).status_code == 401
    assert (await keyed.head(_path(expired.query()))).status_code == 403
    for response in (
        await keyed.head(path, headers={"X-API-Key": KEY}),
        await keyed.head(_path(signer.sign(TASK_ID, FILENAME).query())),
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.headers["content-length"] == str(len(PNG))
        assert response.content == b""


async def test_results_path_of_the_original_follows_the_download_rules(
    keyed: httpx.AsyncClient, keyed_data_dir: Path
) -> None:
    path = f"/results/{TASK_ID}/{FILENAME}"
    signer = _signer(keyed_data_dir)
    signed = signer.sign(TASK_ID, FILENAME).query()
    expired = signer.sign(TASK_ID, FILENAME, now=time.time() - signer.ttl_seconds - 5).query()
    other_file = signer.sign(TASK_ID, "other.png").query()
    assert (await keyed.get(path)).status_code == 401
    assert (await keyed.head(path)).status_code == 401
    assert (await keyed.get(f"{path}?{expired}")).json()["detail"][0]["loc"][-1] == "expires"
    assert (await keyed.get(f"{path}?{other_file}")).status_code == 403
    for response in (
        await keyed.get(path, headers={"Authorization": f"Bearer {KEY}"}),
        await keyed.get(f"{path}?{signed}"),
    ):
        assert response.status_code == 200 and response.content == PNG
    head = await keyed.head(f"{path}?{signed}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(PNG))


def test_output_urls_in_results_carry_a_signature_that_verifies(tmp_path: Path) -> None:
    signer = _signer(tmp_path)
    url = output_url("http://api.example", TASK_ID, FILENAME, signer)
    query = parse_qs(urlsplit(url).query)
    signer.verify(TASK_ID, FILENAME, query["expires"][0], query["sig"][0])
    with pytest.raises(DownloadForbidden):
        signer.verify(TASK_ID, "x.png", query["expires"][0], query["sig"][0])


def test_signing_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = load_signing_key(tmp_path, None)
    mode = stat.S_IMODE((tmp_path / SIGNING_KEY_FILE).stat().st_mode)
    assert mode == 0o600
    assert load_signing_key(tmp_path, None) == first  # a restart keeps URLs valid
    assert load_signing_key(tmp_path, "configured-secret") == b"configured-secret"


# ---- where the service may listen without keys


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_keys(host: str) -> None:
    check_bind_access(host, [], insecure_no_auth=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "api.example.com"])
def test_reachable_host_without_keys_is_refused(host: str) -> None:
    with pytest.raises(InsecureBind, match="--insecure-no-auth"):
        check_bind_access(host, [], insecure_no_auth=False)


def test_reachable_host_is_allowed_with_keys_or_the_explicit_flag() -> None:
    check_bind_access("0.0.0.0", ["k"], insecure_no_auth=False)
    check_bind_access("0.0.0.0", [], insecure_no_auth=True)


@pytest.mark.parametrize("command", ["api", "dev"])
async def test_service_refuses_a_non_loopback_host_without_keys(
    command: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFY_")}
    process = await _run_cli(
        [command, "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(tmp_path)],
        env,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert "refusing to serve the API on 0.0.0.0 without API keys" in err.decode()
    assert "COMFY_API_KEYS" in err.decode() and "--insecure-no-auth" in err.decode()
    assert not (tmp_path / "temporal.db").exists()  # refused before anything started


async def _run_cli(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
