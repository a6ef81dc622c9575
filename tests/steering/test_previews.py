"""GET /tasks/{id}/preview: the latest sampler preview while a job with `previews: true` runs."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable

import httpx
from PIL import Image

from tests.support.graphs import next_width
from tests.support.manifests import EMULATOR_WORKFLOW_ID, PREVIEWS_WORKFLOW_ID
from tests.support.stack import GenerationStack
from tests.support.waiting import poll_task

Submit = Callable[..., Awaitable[str]]


async def _wait_for(http: httpx.AsyncClient, task_id: str, done: Callable[[dict], bool]) -> dict:
    return await poll_task(http, task_id, done)


async def test_latest_preview_is_served_while_a_previews_job_runs(
    http: httpx.AsyncClient, submit: Submit
) -> None:
    task_id = await submit(PREVIEWS_WORKFLOW_ID, steps=20, seconds_per_step=0.15)

    async with asyncio.timeout(30):
        while True:
            preview = await http.get(f"/tasks/{task_id}/preview")
            if preview.status_code == 200:
                break
            assert preview.status_code == 404, preview.text
            assert (await http.get(f"/tasks/{task_id}")).json()["status"] in ("PENDING", "PROGRESS")
            await asyncio.sleep(0.05)

    assert preview.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(preview.content))
    assert image.format == "JPEG"
    assert image.size == (8, 8)  # the emulator's latent-style preview
    assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "PROGRESS"


async def test_preview_is_gone_with_a_clear_reason_once_the_job_has_finished(
    http: httpx.AsyncClient, submit: Submit, stack: GenerationStack
) -> None:
    task_id = await submit(PREVIEWS_WORKFLOW_ID, steps=6, seconds_per_step=0.1)
    await _wait_for(http, task_id, lambda body: body["status"] == "SUCCESS")

    answer = await http.get(f"/tasks/{task_id}/preview")

    assert answer.status_code == 404
    assert "has finished (SUCCESS)" in answer.json()["detail"][0]["msg"]
    assert not (stack.data_dir / "previews" / task_id).exists()


async def _preview_method_sent_to_comfyui(stack: GenerationStack, width: int) -> str | None:
    """extra_data.preview_method of the prompt whose Empty Image has this width."""
    async with httpx.AsyncClient(base_url=stack.comfyui_url, trust_env=False) as comfy:
        history = (await comfy.get("/history")).json()
        queue = (await comfy.get("/queue")).json()
    # Queue items and history["prompt"] are [number, prompt_id, graph, extra_data, outputs] (§2.3).
    items = [h["prompt"] for h in history.values()]
    items += queue["queue_running"] + queue["queue_pending"]
    (extra_data,) = [item[3] for item in items if item[2]["1"]["inputs"]["width"] == width]
    method: str | None = extra_data.get("preview_method")
    return method


async def test_a_previews_workflow_asks_comfyui_for_previews_per_prompt(
    http: httpx.AsyncClient, submit: Submit, stack: GenerationStack
) -> None:
    width = next_width()
    task_id = await submit(PREVIEWS_WORKFLOW_ID, steps=2, seconds_per_step=0.01, width=width)
    await _wait_for(http, task_id, lambda body: body["status"] == "SUCCESS")
    assert await _preview_method_sent_to_comfyui(stack, width) == "auto"


async def test_a_workflow_without_previews_asks_for_none_and_says_how_to_turn_them_on(
    http: httpx.AsyncClient, submit: Submit, stack: GenerationStack
) -> None:
    width = next_width()
    task_id = await submit(EMULATOR_WORKFLOW_ID, steps=20, seconds_per_step=0.1, width=width)
    await _wait_for(
        http, task_id, lambda body: ((body.get("progress") or {}).get("step") or 0) >= 3
    )

    answer = await http.get(f"/tasks/{task_id}/preview")

    assert answer.status_code == 404
    assert "previews: true" in answer.json()["detail"][0]["msg"]
    assert not (stack.data_dir / "previews" / task_id).exists()
    assert await _preview_method_sent_to_comfyui(stack, width) is None


async def test_preview_of_an_unknown_task_is_404(http: httpx.AsyncClient) -> None:
    answer = await http.get("/tasks/no-such-task/preview")
    assert answer.status_code == 404
    assert answer.json()["detail"][0]["type"] == "task_not_found"
