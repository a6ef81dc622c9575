"""A download carries the Content-Type the task's result names for the file: the output store
(which fills `result.outputs[].content_type`) and the download route ask the same function."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from activities.io.output_store import LocalOutputStore

TASK_ID = "smoke_video-20260101-000000-0d0e0f"


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("clip_00001_.mp4", "video/mp4"),
        ("clip_00001_.webm", "video/webm"),
        ("voice_00001_.flac", "audio/flac"),
        ("voice_00001_.opus", "audio/ogg"),
        ("voice_00001_.mp3", "audio/mpeg"),
        ("image_00001_.webp", "image/webp"),
        ("image_00001_.png", "image/png"),
        ("mesh_00001_.glb", "model/gltf-binary"),
    ],
)
async def test_download_content_type_is_the_one_the_result_names(
    http: httpx.AsyncClient, api_data_dir: Path, filename: str, content_type: str
) -> None:
    store = LocalOutputStore(api_data_dir)
    staged = store.staging_dir(TASK_ID, f"attempt-{filename}") / filename
    staged.write_bytes(b"\x00" * 64)
    [stored] = await store.commit(TASK_ID, [staged])
    assert stored.content_type == content_type

    response = await http.get(f"/tasks/{TASK_ID}/outputs/{filename}")
    assert response.status_code == 200
    assert response.headers["content-type"] == stored.content_type
