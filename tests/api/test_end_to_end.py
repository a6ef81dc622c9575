"""Jobs through the real stack: API over HTTP, control worker, GPU worker, ComfyUI emulator."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from PIL import Image
from temporalio.client import Client

from tests.support.manifests import EMULATOR_WORKFLOW_ID, emulator_sampler_registry
from tests.support.stack import GenerationStack, generation_stack, unique
from tests.support.waiting import poll_task

SPEC_CLIENT = Path(__file__).with_name("spec_client_example.txt")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    base = tmp_path_factory.mktemp("stack")
    registry = emulator_sampler_registry(base)
    async with generation_stack(
        temporal_client, base, registry, gpu_workers=[unique("api-test-gpu")]
    ) as running:
        yield running


async def _wait_for_status(
    http: httpx.AsyncClient, task_id: str, wanted: set[str], timeout: float = 60
) -> dict:
    return await poll_task(http, task_id, lambda body: body["status"] in wanted, timeout)


async def test_spec_example_client_gets_success_and_a_downloadable_png(
    stack: GenerationStack, tmp_path: Path
) -> None:
    # The spec's client script, unchanged except its payload (in the file) and API_URL (here).
    source = SPEC_CLIENT.read_text()
    assert 'API_URL = "http://127.0.0.1:8000"' in source
    script = tmp_path / "client_example.py"
    script.write_text(source.replace('"http://127.0.0.1:8000"', f'"{stack.url}"'))
    completed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Generation complete!" in completed.stdout, completed.stdout
    match = re.search(r"^Download URL: (\S+)$", completed.stdout, re.MULTILINE)
    assert match, completed.stdout
    async with httpx.AsyncClient() as http:
        download = await http.get(match.group(1))
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "PNG" and image.size == (64, 48)


async def test_success_result_has_outputs_params_timings_worker_attempts(
    stack: GenerationStack,
) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        accepted = await http.post(
            "/generate", json={"workflow_id": "smoke_image", "params": {"width": 8, "height": 8}}
        )
        body = await _wait_for_status(http, accepted.json()["task_id"], {"SUCCESS", "FAILURE"})
    assert body["status"] == "SUCCESS", body
    result = body["result"]
    (output,) = result["outputs"]
    assert result["download_url"] == output["url"]
    assert output["content_type"] == "image/png" and output["size"] > 0 and output["node_id"] == "3"
    assert result["params"]["width"] == 8 and result["params"]["height"] == 8
    assert result["worker"] == stack.worker_name
    assert result["attempts"] == 1
    assert result["timings"]["total_seconds"] > 0


async def test_running_job_reads_progress_with_sampler_percent(stack: GenerationStack) -> None:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
        accepted = await http.post(
            "/generate",
            json={
                "workflow_id": EMULATOR_WORKFLOW_ID,
                "params": {"steps": 60, "seconds_per_step": 0.1},
            },
        )
        task_id = accepted.json()["task_id"]
        progress_seen = []
        async with asyncio.timeout(30):
            while True:
                body = (await http.get(f"/tasks/{task_id}")).json()
                progress = body.get("progress") or {}
                if body["status"] == "PROGRESS" and progress.get("class_type") == "EmulatorSampler":
                    progress_seen.append(progress)
                    if progress.get("step") and progress["step"] < progress["max"]:
                        break
                assert body["status"] in ("PENDING", "PROGRESS"), body
                await asyncio.sleep(0.1)
        last = progress_seen[-1]
        assert last["node"] == "2" and last["max"] == 60
        assert 0 < last["percent"] < 100
        cancel = await http.post(f"/tasks/{task_id}/cancel")
        assert cancel.status_code == 202
        body = await _wait_for_status(http, task_id, {"CANCELLED", "SUCCESS", "FAILURE"})
    assert body["status"] == "CANCELLED", body
    assert body["result"].startswith("cancelled"), body


async def test_comfyui_execution_error_reads_failure_with_reason_and_node(
    stack: GenerationStack,
) -> None:
    await stack.set_emulator_faults(fail_on_node="ImageInvert")
    try:
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as http:
            accepted = await http.post(
                "/generate", json={"workflow_id": "smoke_image", "params": {"width": 9}}
            )
            body = await _wait_for_status(http, accepted.json()["task_id"], {"SUCCESS", "FAILURE"})
    finally:
        await stack.set_emulator_faults()
    assert body["status"] == "FAILURE", body
    assert isinstance(body["result"], str) and "ImageInvert" in body["result"]
    assert body["error"]["node_id"] == "2"
    assert body["error"]["class_type"] == "ImageInvert"
    assert body["error"]["message"]


async def test_ready_names_the_gpu_worker_polling_the_pool(stack: GenerationStack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as http:
        response = await http.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ready"] is True
    assert stack.worker_name in body["pools"]["default"]["pollers"]
