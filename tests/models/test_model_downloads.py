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
import pytest
from temporalio.client import Client

from activities.models.download import ModelCredentials, ModelDownloadError
from activities.models.store import ModelStore
from manifests.model_inputs import ModelFromUrl
from temporal_workflows.payloads import ModelInputRef
from tests.support.manifests import CHECKPOINT_WORKFLOW_ID, write_checkpoint_manifests
from tests.support.model_files import ModelServer, model_bytes
from tests.support.stack import GenerationStack, generation_stack
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


async def test_the_api_refuses_a_private_address_by_default(
    tmp_path: Path, temporal_client: Client
):
    # A stack of its own with the default policy: loopback is not a place a request may send
    # the service to.
    registry = write_checkpoint_manifests(tmp_path)
    async with (
        generation_stack(temporal_client, tmp_path, registry) as refusing,
        httpx.AsyncClient(base_url=refusing.url, timeout=30) as http,
    ):
        private = {"url": "http://127.0.0.1:9/m.safetensors"}
        response = await http.post(
            "/generate",
            json={"workflow_id": CHECKPOINT_WORKFLOW_ID, "params": {"checkpoint": private}},
        )
        # A batch names the item and the key alike, for the address and for the shape.
        in_batch = await http.post(
            "/batches",
            json={
                "workflow_id": CHECKPOINT_WORKFLOW_ID,
                "items": [{"checkpoint": private}],
            },
        )
        bad_hash = await http.post(
            "/batches",
            json={
                "workflow_id": CHECKPOINT_WORKFLOW_ID,
                "sweep": {"checkpoint": [private, {**private, "sha256": "x"}]},
            },
        )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "params", "checkpoint", "url"]
    assert "loopback" in problem["msg"]
    assert in_batch.status_code == 422, in_batch.text
    (problem,) = in_batch.json()["detail"]
    assert problem["loc"] == ["body", "items", 0, "checkpoint", "url"]
    assert "loopback" in problem["msg"]
    assert bad_hash.status_code == 422, bad_hash.text
    (problem,) = bad_hash.json()["detail"]
    assert problem["loc"] == ["body", "sweep", "checkpoint", 1, "sha256"]


def _store_and_ref(
    models_dir: Path, models: ModelServer, name: str, *, allow_private: bool, max_bytes: int
) -> tuple[ModelStore, ModelInputRef]:
    store = ModelStore(
        models_dir,
        cache_bytes=SIZE * 4,
        max_model_bytes=max_bytes,
        allow_private=allow_private,
        credentials=ModelCredentials({}),
    )
    source = ModelFromUrl(models.url(name))
    ref = ModelInputRef(
        param="checkpoint", folder="checkpoints", url=source.url, name=source.file_name(),
        targets=["1.ckpt_name"],
    )  # fmt: skip
    return store, ref


async def test_the_gpu_worker_refuses_a_private_address_itself(tmp_path: Path, models: ModelServer):
    # A workflow started without the API reaches the worker unchecked: it applies the policy too.
    models.files["m.safetensors"] = model_bytes(16, 5)
    store, ref = _store_and_ref(
        tmp_path, models, "m.safetensors", allow_private=False, max_bytes=SIZE
    )
    with pytest.raises(ModelDownloadError) as refused:
        await store.acquire(ref)
    assert refused.value.type == "ModelUrlRefused"
    assert "loopback" in refused.value.reason
    assert models.requests == []


async def test_a_file_over_the_size_cap_is_refused(tmp_path: Path, models: ModelServer):
    models.files["huge.safetensors"] = model_bytes(SIZE, 6)
    store, ref = _store_and_ref(
        tmp_path, models, "huge.safetensors", allow_private=True, max_bytes=SIZE // 2
    )
    with pytest.raises(ModelDownloadError) as refused:
        await store.acquire(ref)
    assert refused.value.type == "ModelTooLarge"
    assert not refused.value.retryable
    assert not (tmp_path / "checkpoints" / ref.name).exists()
