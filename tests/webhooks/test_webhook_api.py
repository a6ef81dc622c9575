"""Webhooks through the HTTP API: the original top-level `callback_url` on POST /generate, the
signed POST, and GET /tasks/{id} showing the delivery."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from activities.generation.webhooks import verify_signature
from tests.support.images import solid_png
from tests.support.manifests import INVERT_WORKFLOW_ID as WORKFLOW_ID
from tests.support.manifests import emulator_sampler_registry, write_image_manifests
from tests.support.stack import generation_stack, unique
from tests.support.waiting import poll_task
from tests.support.webhooks import WebhookReceiver

SECRET = "api-webhook-secret"
API_KEY = "webhook-test-api-key"


async def test_top_level_callback_url_is_delivered_and_shown_in_the_task(
    temporal_client: Client, tmp_path: Path, receiver: WebhookReceiver
):
    image = base64.b64encode(solid_png((0, 0, 0))).decode()
    with pytest.MonkeyPatch.context() as patch:
        # Read by the embedded control worker, which signs and sends.
        patch.setenv("COMFY_WEBHOOK_SECRET", SECRET)
        patch.setenv("COMFY_ALLOW_PRIVATE_CALLBACK_URLS", "1")
        async with (
            generation_stack(
                temporal_client,
                tmp_path,
                write_image_manifests(tmp_path),
                gpu_workers=[unique("inputs-gpu")],
                allow_private_callback_urls=True,
            ) as stack,
            httpx.AsyncClient(base_url=stack.url, timeout=30) as http,
        ):
            response = await http.post(
                "/generate",
                json={
                    "workflow_id": WORKFLOW_ID,
                    "params": {"image": {"base64": image}},
                    "callback_url": receiver.url,
                },
            )
            assert response.status_code == 202, response.text
            task_id = response.json()["task_id"]
            task = await poll_task(
                http, task_id, lambda task: (task.get("webhook") or {}).get("status") == "delivered"
            )

    (hook,) = receiver.received
    assert verify_signature(SECRET, hook.body, hook.headers["X-Comfy-Signature"])
    body = hook.json()
    assert body["status"] == task["status"] == "SUCCESS"
    assert body["status_url"] == f"{stack.url}/tasks/{task_id}"
    assert body["result"]["outputs"][0]["filename"] == task["result"]["outputs"][0]["filename"]
    assert task["webhook"]["url"] == receiver.url
    assert task["webhook"]["attempts"] == 1
    assert task["webhook"]["delivery_id"] == hook.headers["X-Comfy-Delivery"]


async def test_download_url_in_a_webhook_works_without_an_api_key(
    temporal_client: Client, tmp_path: Path, receiver: WebhookReceiver
):
    receiver.answers = [503]  # a retry too: it must carry the same (still valid) URL
    registry = emulator_sampler_registry(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMFY_ALLOW_PRIVATE_CALLBACK_URLS", "1")
        async with (
            generation_stack(
                temporal_client,
                tmp_path,
                registry,
                gpu_workers=[unique("hook-gpu")],
                api_keys=(API_KEY,),
                allow_private_callback_urls=True,
            ) as stack,
            httpx.AsyncClient(base_url=stack.url, timeout=30) as http,
        ):
            response = await http.post(
                "/generate",
                json={
                    "workflow_id": "smoke_image",
                    "params": {"width": 8, "height": 8},
                    "options": {"callback_url": receiver.url},
                },
                headers={"X-API-Key": API_KEY},
            )
            assert response.status_code == 202, response.text
            first, retry = await receiver.wait_for_requests(2, timeout=60)
            assert first.body == retry.body
            url = first.json()["result"]["download_url"]
            assert url.startswith(f"{stack.url}/tasks/")
            # Without a key the API refuses everything but a correctly signed download URL.
            unsigned = url.split("?")[0]
            assert (await http.get(unsigned)).status_code == 401
            download = await http.get(url)

    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "image/png"
    assert download.content.startswith(b"\x89PNG")
