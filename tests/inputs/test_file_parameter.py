"""A parameter of the original format's `type: file` works like an `image` one end to end: the
file the request brings is stored by the API, uploaded by the GPU worker to its ComfyUI (the
emulator) and read by LoadImage."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from activities.generation.image_uploads import image_extension
from tests.support.images import first_pixel, solid_png
from tests.support.manifests import INVERT_BASE_YAML as BASE_YAML
from tests.support.manifests import INVERT_WORKFLOW_ID as WORKFLOW_ID
from tests.support.manifests import write_image_manifests
from tests.support.stack import generation_stack, unique

DEADLINE = 60.0


@pytest_asyncio.fixture
async def url(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    base_dir = tmp_path_factory.mktemp("file-param")
    registry = write_image_manifests(
        base_dir, base_yaml=BASE_YAML.replace("type: image", "type: file")
    )
    assert registry.get(WORKFLOW_ID).parameters["image"].type == "file"
    async with generation_stack(
        temporal_client, base_dir, registry, gpu_workers=[unique("file-gpu")]
    ) as running:
        yield running.url


async def test_a_base64_file_reaches_load_image(url: str) -> None:
    png = solid_png((200, 30, 10))
    body = {
        "workflow_id": WORKFLOW_ID,
        "params": {"image": {"base64": base64.b64encode(png).decode()}},
    }
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post("/generate", json=body)
        assert response.status_code == 202, response.text
        task_id = response.json()["task_id"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while (task := (await http.get(f"/tasks/{task_id}")).json())["status"] not in (
            "SUCCESS",
            "FAILURE",
        ):
            assert loop.time() < deadline, task
            await asyncio.sleep(0.1)
        assert task["status"] == "SUCCESS", task
        stored = task["result"]["params"]["image"]["input_file"]
        assert stored.endswith(".png")
        download = await http.get(task["result"]["download_url"])
    assert first_pixel(download.content) == (55, 225, 245)


@pytest.mark.parametrize(
    ("head", "extension"),
    [
        (b"\x00\x00\x00\x18ftypmp42", "mp4"),
        (b"\x1aE\xdf\xa3\x9fB\x86\x81", "webm"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"OggS\x00\x02\x00\x00", "ogg"),
        (b"ID3\x04\x00\x00\x00\x00", "mp3"),
    ],
)
def test_a_video_or_audio_file_without_a_name_is_named_by_its_content(
    head: bytes, extension: str
) -> None:
    assert image_extension(head + b"\x00" * 32) == extension
