"""POST /generate refuses bad requests with a 4xx naming each bad field, before starting."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


def _locs(response: httpx.Response) -> list[list[Any]]:
    return [entry["loc"] for entry in response.json()["detail"]]


async def test_unknown_workflow_is_422_naming_workflow_id_and_the_known_ids(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/generate", json={"workflow_id": "no_such_flow", "params": {}})
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "workflow_id"]
    assert "no_such_flow" in entry["msg"] and "smoke_image" in entry["msg"]


async def test_unknown_parameter_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "smoke_image", "params": {"colour": 5}}
    )
    assert response.status_code == 422
    assert _locs(response) == [["body", "params", "colour"]]


@pytest.mark.parametrize(
    ("param", "value"),
    [("invert", "false"), ("width", 8.9), ("width", "64"), ("color", True)],
)
async def test_wrong_type_is_named_with_the_reason(
    http: httpx.AsyncClient, param: str, value: Any
) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "smoke_image", "params": {param: value}}
    )
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "params", param]
    assert entry["msg"]


async def test_out_of_bounds_value_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "smoke_image", "params": {"width": 0}}
    )
    assert response.status_code == 422
    assert _locs(response) == [["body", "params", "width"]]


async def test_missing_required_parameter_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "flux_wavespeed", "params": {"steps": 4}}
    )
    assert response.status_code == 422
    assert ["body", "params", "prompt"] in _locs(response)


async def test_every_bad_parameter_is_reported_at_once(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate",
        json={"workflow_id": "smoke_image", "params": {"width": 8.9, "invert": "false", "x": 1}},
    )
    assert response.status_code == 422
    assert sorted(map(tuple, _locs(response))) == [
        ("body", "params", "invert"),
        ("body", "params", "width"),
        ("body", "params", "x"),
    ]


async def test_malformed_json_is_422_not_500(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate",
        content=b'{"workflow_id": "smoke_image",',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_missing_workflow_id_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post("/generate", json={"params": {}})
    assert response.status_code == 422
    assert _locs(response) == [["body", "workflow_id"]]


async def test_params_of_the_wrong_json_type_are_named(http: httpx.AsyncClient) -> None:
    response = await http.post("/generate", json={"workflow_id": "smoke_image", "params": [1]})
    assert response.status_code == 422
    assert _locs(response) == [["body", "params"]]


async def test_unknown_top_level_field_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "smoke_image", "params": {}, "priority": 1}
    )
    assert response.status_code == 422
    assert _locs(response) == [["body", "priority"]]


async def test_priority_out_of_range_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "smoke_image", "options": {"priority": 9}}
    )
    assert response.status_code == 422
    assert _locs(response) == [["body", "options", "priority"]]


async def test_pinning_an_absent_worker_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate", json={"workflow_id": "smoke_image", "options": {"worker": "nobody-here"}}
    )
    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "options", "worker"]
    assert "nobody-here" in entry["msg"]


async def test_body_that_is_not_json_is_4xx(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/generate", content=b"workflow_id=smoke_image", headers={"content-type": "text/plain"}
    )
    assert 400 <= response.status_code < 500


async def test_oversized_params_are_refused_before_reaching_temporal(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(
        "/generate",
        json={"workflow_id": "flux_wavespeed", "params": {"prompt": "x" * 300_000}},
    )
    assert response.status_code == 413
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "params"]
