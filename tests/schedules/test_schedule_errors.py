"""Bad schedule requests get a 4xx naming the field and the reason, and create nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.support.schedules import Schedules, quiet_spec


async def test_invalid_params_are_rejected_at_creation_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(
        "/schedules",
        json={
            "schedule_id": "never-created-bad-params",
            "workflow_id": "smoke_image",
            "params": {"width": "wide"},
            "spec": quiet_spec(),
        },
    )

    assert response.status_code == 422
    (entry,) = response.json()["detail"]
    assert entry["loc"] == ["body", "params", "width"]
    assert entry["type"] == "param_invalid" and entry["msg"]
    assert (await http.get("/schedules/never-created-bad-params")).status_code == 404


async def test_unknown_workflow_is_rejected_at_creation(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/schedules", json={"workflow_id": "no_such_workflow", "spec": quiet_spec()}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "workflow_id"]


async def test_a_second_schedule_with_the_same_id_is_a_conflict(
    http: httpx.AsyncClient, schedules: Schedules
) -> None:
    created = await schedules.create(workflow_id="smoke_image")

    again = await http.post(
        "/schedules",
        json={
            "schedule_id": created["schedule_id"],
            "workflow_id": "smoke_image",
            "spec": quiet_spec(),
        },
    )

    assert again.status_code == 409
    assert again.json()["detail"][0]["loc"] == ["body", "schedule_id"]


async def test_cron_expression_temporal_cannot_parse_is_rejected(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(
        "/schedules",
        json={"workflow_id": "smoke_image", "spec": {"cron": ["every tuesday-ish"]}},
    )

    assert response.status_code == 422
    entry = response.json()["detail"][0]
    assert entry["loc"] == ["body", "spec"]
    assert "cron" in entry["msg"].lower()


@pytest.mark.parametrize(
    ("spec", "loc", "words"),
    [
        ({}, ["body", "spec"], "cron expression or interval"),
        ({"intervals": [{"every": "soon"}]}, ["body", "spec", "intervals", 0, "every"], "'30s'"),
        ({"intervals": [{"every": 0}]}, ["body", "spec", "intervals", 0, "every"], "1 second"),
        (
            {"cron": ["0 3 * * *"], "time_zone": "Mars/Olympus"},
            ["body", "spec", "time_zone"],
            "Mars",
        ),
        (
            {"cron": ["0 3 * * *"], "start_at": "2030-01-01T00:00:00"},
            ["body", "spec", "start_at"],
            "timezone",
        ),
    ],
)
async def test_bad_spec_is_rejected_naming_the_field(
    http: httpx.AsyncClient, spec: dict, loc: list, words: str
) -> None:
    response = await http.post("/schedules", json={"workflow_id": "smoke_image", "spec": spec})

    assert response.status_code == 422
    entry = response.json()["detail"][0]
    assert entry["loc"] == loc
    assert words.lower() in entry["msg"].lower()


async def test_bad_overlap_policy_is_rejected_naming_the_field(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/schedules",
        json={"workflow_id": "smoke_image", "spec": quiet_spec(), "policy": {"overlap": "never"}},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "policy", "overlap"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/unpause"),
        ("POST", "/trigger"),
    ],
)
async def test_unknown_schedule_id_is_404(http: httpx.AsyncClient, method: str, path: str) -> None:
    body: dict[str, object] | None = {} if method == "PATCH" else None
    response = await http.request(method, f"/schedules/no-such-schedule{path}", json=body)

    assert response.status_code == 404
    assert "no-such-schedule" in response.json()["detail"][0]["msg"]
