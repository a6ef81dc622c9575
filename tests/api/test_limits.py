"""Size limits: the request body (413 before any route reads it) and each manifest parameter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.settings import Settings
from manifests.registry import ManifestRegistry

LIMIT = Settings().max_body_bytes


def _too_big_body() -> bytes:
    body = {"workflow_id": "smoke_image", "params": {"pad": "x" * (LIMIT + 1000)}}
    return json.dumps(body).encode()


def _assert_body_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body"] and entry["type"] == "body_too_large"
    assert str(LIMIT) in entry["msg"]


async def test_body_over_the_limit_is_413_naming_the_limit(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate", content=_too_big_body(), headers={"content-type": "application/json"}
    )
    _assert_body_too_large(response)


async def test_chunked_body_without_length_over_the_limit_is_413(
    http: httpx.AsyncClient,
) -> None:
    body = _too_big_body()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await http.post(
        "/generate", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    _assert_body_too_large(response)


async def test_the_limit_applies_to_every_route(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/schedules", content=_too_big_body(), headers={"content-type": "application/json"}
    )
    _assert_body_too_large(response)


# ---- per-parameter limits of the shipped manifests


def _shipped_parameters() -> list[tuple[str, str, Any]]:
    snapshot = ManifestRegistry().snapshot()
    assert not snapshot.errors
    return [
        (workflow_id, name, defn)
        for workflow_id, manifest in snapshot.workflows.items()
        for name, defn in manifest.parameters.items()
    ]


@pytest.mark.parametrize(
    ("workflow_id", "name", "defn"),
    _shipped_parameters(),
    ids=[f"{w}.{n}" for w, n, _ in _shipped_parameters()],
)
def test_every_shipped_parameter_is_bounded(workflow_id: str, name: str, defn: Any) -> None:
    """Numbers have a min and a max; strings a max_length, a pattern or a list of choices."""
    if defn.type in ("integer", "float"):
        assert defn.min is not None and defn.max is not None
    elif defn.type == "string":
        assert defn.max_length is not None or defn.pattern or defn.choices


@pytest.mark.parametrize(
    ("workflow_id", "params", "field"),
    [
        ("flux_wavespeed", {"prompt": "a cat", "width": 16385}, "width"),
        ("flux_wavespeed", {"prompt": "a cat", "height": 15}, "height"),
        ("sd15_txt2img", {"prompt": "a cat", "steps": 10001}, "steps"),
        ("sd15_txt2img", {"prompt": "x" * 20001}, "prompt"),
        ("flux_wavespeed", {"prompt": "a cat", "model": "m" * 256}, "model"),
        ("smoke_image", {"filename_prefix": "a" * 65}, "filename_prefix"),
    ],
)
async def test_parameter_over_its_manifest_limit_is_422_naming_it(
    http: httpx.AsyncClient, workflow_id: str, params: dict[str, Any], field: str
) -> None:
    response = await http.post("/generate", json={"workflow_id": workflow_id, "params": params})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "params", field]]
