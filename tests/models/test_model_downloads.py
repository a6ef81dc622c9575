"""Model files given by URL on a real stack: the GPU worker downloads each into the model folder
its ComfyUI (the emulator) reads, the loader takes it without a restart, and each way a download
can fail ends in a clear failure naming the parameter and the URL, retried only when it may
pass."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx

from manifests.model_inputs import ModelFromUrl
from tests.support.manifests import CHECKPOINT_WORKFLOW_ID
from tests.support.model_files import ModelServer, model_bytes
from tests.support.stack import GenerationStack
from tests.support.waiting import poll_task, wait_for

DEADLINE = 60.0
SIZE = 64 * 1024


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _downloaded(stack: GenerationStack, url: str) -> Path:
    models_dir = stack.gpu_workers[0].worker.settings.models_dir
    assert models_dir is not None
    return models_dir / "checkpoints" / ModelFromUrl(url).file_name()


async def _submit(http: httpx.AsyncClient, checkpoint: Any) -> str:
    response = await http.post(
        "/generate",
        json={"workflow_id": CHECKPOINT_WORKFLOW_ID, "params": {"checkpoint": checkpoint}},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


async def _finished(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    return await poll_task(
        http, task_id, lambda t: t["status"] in ("SUCCESS", "FAILURE", "CANCELLED"), DEADLINE
    )


async def test_a_model_by_url_is_downloaded_and_loaded(stack: GenerationStack, models: ModelServer):
    data = models.files["sd-tiny.safetensors"] = model_bytes(SIZE, 1)
    url = models.url("sd-tiny.safetensors")
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task = await _finished(http, await _submit(http, {"url": url, "sha256": _sha(data)}))
        assert task["status"] == "SUCCESS", task
        assert _downloaded(stack, url).read_bytes() == data
        # The emulated loader accepted the name only because its model folder lists the file.
        again = await _finished(http, await _submit(http, {"url": url}))
        assert again["status"] == "SUCCESS", again
    assert models.count("sd-tiny.safetensors") == 1  # the second job found it in the cache


async def test_a_missing_file_fails_at_once_naming_the_parameter_and_the_url(
    stack: GenerationStack, models: ModelServer
):
    url = models.url("gone.safetensors")
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task = await _finished(http, await _submit(http, {"url": url}))
    assert task["status"] == "FAILURE"
    error = task["error"]
    assert error["type"] == "ModelUnavailable"
    assert error["param"] == "checkpoint"
    assert "'checkpoint'" in error["message"] and url in error["message"]
    assert "404" in error["message"]
    assert models.count("gone.safetensors") == 1  # not retried


async def test_a_hash_mismatch_fails_and_is_not_retried(
    stack: GenerationStack, models: ModelServer
):
    models.files["tampered.safetensors"] = model_bytes(SIZE, 2)
    url = models.url("tampered.safetensors")
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task = await _finished(http, await _submit(http, {"url": url, "sha256": "0" * 64}))
    assert task["status"] == "FAILURE"
    assert task["error"]["type"] == "ModelHashMismatch"
    assert url in task["error"]["message"] and "'checkpoint'" in task["error"]["message"]
    assert models.count("tampered.safetensors") == 1
    assert not _downloaded(stack, url).exists()


async def test_a_download_cut_mid_way_resumes_on_the_retry(
    stack: GenerationStack, models: ModelServer
):
    data = models.files["big.safetensors"] = model_bytes(SIZE, 3)
    models.cut_after["big.safetensors"] = SIZE // 4
    url = models.url("big.safetensors")
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        task = await _finished(http, await _submit(http, {"url": url, "sha256": _sha(data)}))
    assert task["status"] == "SUCCESS", task
    ranges = [ranged for name, ranged in models.requests if name == "big.safetensors"]
    assert ranges[0] is None
    assert ranges[1:] == [f"bytes={SIZE // 4}-"]
    assert _sha(_downloaded(stack, url).read_bytes()) == _sha(data)


async def test_concurrent_jobs_share_one_download_and_show_its_progress(
    stack: GenerationStack, models: ModelServer
):
    models.files["shared.safetensors"] = model_bytes(SIZE, 4)
    gate = models.held["shared.safetensors"] = asyncio.Event()
    url = models.url("shared.safetensors")
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        first = await _submit(http, {"url": url})
        second = await _submit(http, {"url": url})

        async def downloading(task_id: str) -> dict[str, Any] | None:
            task = (await http.get(f"/tasks/{task_id}")).json()
            queue = task.get("queue") or {}
            download = queue.get("download") or {}
            held = download.get("bytes_done", 0) >= SIZE // 2
            return task if queue.get("phase") == "downloading_model" and held else None

        for task_id in (first, second):
            task = await wait_for(lambda t=task_id: downloading(t), "the download's progress")
            assert task["status"] == "PENDING"
            assert task["queue"]["download"] == {
                "param": "checkpoint",
                "url": url,
                "bytes_done": SIZE // 2,
                "bytes_total": SIZE,
            }
        gate.set()
        for task_id in (first, second):
            assert (await _finished(http, task_id))["status"] == "SUCCESS"
    assert models.count("shared.safetensors") == 1
