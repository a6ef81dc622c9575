"""Model names checked at submit against what the pool's GPU workers report: a miss is a 422
with the closest names, a name a GPU has runs, GET /workflows/{id} shows the choices and
GET /loras lists the catalogued LoRAs a GPU has."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.inventory import IDLE_MODEL_WORKFLOW_ID, MODEL_WORKFLOW_ID
from tests.support.schedules import quiet_spec
from tests.support.stack import GenerationStack
from tests.support.waiting import poll_task


async def _generate(http: httpx.AsyncClient, params: dict[str, Any], **options: Any) -> Any:
    body: dict[str, Any] = {"workflow_id": MODEL_WORKFLOW_ID, "params": params}
    if options:
        body["options"] = options
    return await http.post("/generate", json=body)


async def test_a_name_no_gpu_has_is_refused_with_the_closest_names(
    http: httpx.AsyncClient, inventory_stack: GenerationStack
) -> None:
    response = await _generate(http, {"checkpoint": "alpha-v2.safetensors"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "params", "checkpoint"]
    assert error["type"] == "model_not_found"
    assert error["ctx"]["closest"][0] == "alpha-v1.safetensors"
    assert "'alpha-v2.safetensors' is not on any GPU worker" in error["msg"]
    assert "closest: alpha-v1.safetensors" in error["msg"]


async def test_every_bad_name_is_named_at_once(http: httpx.AsyncClient) -> None:
    response = await _generate(http, {"checkpoint": "nope.ckpt", "lora": "style-z.safetensors"})
    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == ["checkpoint", "lora"]


async def test_a_name_the_gpus_have_runs_to_success(http: httpx.AsyncClient) -> None:
    response = await _generate(http, {"checkpoint": "common.safetensors"})
    assert response.status_code == 202, response.text
    task = await poll_task(http, response.json()["task_id"], lambda t: t["status"] == "SUCCESS")
    assert task["result"]["outputs"]


async def test_a_pinned_job_is_checked_against_its_own_worker(http: httpx.AsyncClient) -> None:
    refused = await _generate(http, {"checkpoint": "sub/beta-xl.safetensors"}, worker="gpu-a")
    assert refused.status_code == 422
    assert "is not on GPU worker 'gpu-a'" in refused.json()["detail"][0]["msg"]
    accepted = await _generate(
        http, {"checkpoint": "alpha-v1.safetensors", "lora": "style-a.safetensors"}, worker="gpu-a"
    )
    assert accepted.status_code == 202, accepted.text
    task = await poll_task(http, accepted.json()["task_id"], lambda t: t["status"] == "SUCCESS")
    assert task["result"]["worker"] == "gpu-a"


async def test_the_workflow_shows_the_names_the_gpus_have(http: httpx.AsyncClient) -> None:
    parameters = (await http.get(f"/workflows/{MODEL_WORKFLOW_ID}")).json()["parameters"]
    assert parameters["checkpoint"]["choices_from_gpus"] == [
        "alpha-v1.safetensors",
        "common.safetensors",
        "sub/beta-xl.safetensors",
    ]
    assert parameters["lora"]["choices_from_gpus"] == [
        "style-a.safetensors",
        "style-b.safetensors",
    ]


async def test_loras_lists_the_catalogued_loras_a_gpu_has(
    http: httpx.AsyncClient, inventory_stack: GenerationStack
) -> None:
    response = await http.get("/loras", params={"pool": inventory_stack.pool})
    assert response.status_code == 200
    assert response.json() == [
        {
            "name": "style-a.safetensors",
            "description": "Style A",
            "prefix": "style a",
            "suffix": None,
            "examples": ["a.png"],
        },
        {
            "name": "style-b.safetensors",
            "description": "Style B",
            "prefix": None,
            "suffix": "in style b",
            "examples": [],
        },
    ]


async def test_a_pool_no_worker_reported_lists_every_lora_and_accepts_any_name(
    http: httpx.AsyncClient, inventory_stack: GenerationStack
) -> None:
    idle_pool = f"{inventory_stack.pool}-idle"
    loras = (await http.get("/loras", params={"pool": idle_pool})).json()
    assert [lora["name"] for lora in loras] == [
        "style-a.safetensors",
        "style-b.safetensors",
        "style-c.safetensors",
    ]
    workflow = (await http.get(f"/workflows/{IDLE_MODEL_WORKFLOW_ID}")).json()
    assert "choices_from_gpus" not in workflow["parameters"]["checkpoint"]
    response = await http.post(
        "/generate",
        json={"workflow_id": IDLE_MODEL_WORKFLOW_ID, "params": {"checkpoint": "any.ckpt"}},
    )
    assert response.status_code == 202, response.text
    await http.post(f"/tasks/{response.json()['task_id']}/cancel")


async def test_a_bad_pool_name_is_refused(http: httpx.AsyncClient) -> None:
    for pool in ("%ED%A0%80", "a%00b", "x" * 101):
        response = await http.get(f"/loras?pool={pool}")
        assert response.status_code == 422, pool
        assert response.json()["detail"][0]["loc"] == ["query", "pool"]


async def test_a_schedule_is_checked_like_a_generation(http: httpx.AsyncClient) -> None:
    body = {
        "workflow_id": MODEL_WORKFLOW_ID,
        "params": {"checkpoint": "common.safetensors"},
        "spec": quiet_spec(),
        "paused": True,
    }
    created = await http.post("/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["schedule_id"]
    try:
        refused = await http.post(
            "/schedules", json={**body, "params": {"checkpoint": "comon.safetensors"}}
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["ctx"]["closest"][0] == "common.safetensors"
        changed = await http.patch(
            f"/schedules/{schedule_id}", json={"params": {"lora": "style-q.safetensors"}}
        )
        assert changed.status_code == 422
        assert changed.json()["detail"][0]["loc"] == ["body", "params", "lora"]
    finally:
        await http.delete(f"/schedules/{schedule_id}")
