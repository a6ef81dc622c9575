"""GET (and HEAD) /tasks/{id}/outputs/{filename}, and the original service's
/results/{id}/{filename}, serve the task's files and nothing outside its folder."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

TASK_ID = "smoke_image-20260101-000000-0a0b0c"


@pytest.fixture(scope="module")
def stored_output(api_data_dir: Path) -> bytes:
    task_dir = api_data_dir / "outputs" / TASK_ID
    task_dir.mkdir(parents=True, exist_ok=True)
    data = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    (task_dir / "smoke_00001_.png").write_bytes(data)
    (api_data_dir / "secret.txt").write_text("not for download")
    (api_data_dir / "outputs" / "other-task").mkdir(exist_ok=True)
    (api_data_dir / "outputs" / "other-task" / "x.png").write_bytes(b"other")
    return data


async def test_output_is_streamed_with_its_content_type(
    http: httpx.AsyncClient, stored_output: bytes
) -> None:
    response = await http.get(f"/tasks/{TASK_ID}/outputs/smoke_00001_.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == stored_output


async def test_results_path_of_the_original_serves_the_same_file(
    http: httpx.AsyncClient, stored_output: bytes
) -> None:
    response = await http.get(f"/results/{TASK_ID}/smoke_00001_.png")
    head = await http.head(f"/results/{TASK_ID}/smoke_00001_.png")
    missing = await http.get(f"/results/{TASK_ID}/nope.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == stored_output
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(stored_output))
    assert missing.status_code == 404


async def test_head_gives_the_size_and_type_without_the_body(
    http: httpx.AsyncClient, stored_output: bytes
) -> None:
    response = await http.head(f"/tasks/{TASK_ID}/outputs/smoke_00001_.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(stored_output))
    assert response.content == b""


async def test_head_of_a_missing_output_is_404(
    http: httpx.AsyncClient, stored_output: bytes
) -> None:
    response = await http.head(f"/tasks/{TASK_ID}/outputs/nope.png")
    assert response.status_code == 404
    assert response.content == b""


async def test_missing_output_is_404(http: httpx.AsyncClient, stored_output: bytes) -> None:
    response = await http.get(f"/tasks/{TASK_ID}/outputs/nope.png")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        f"/tasks/{TASK_ID}/outputs/..%2F..%2Fsecret.txt",
        f"/tasks/{TASK_ID}/outputs/%2E%2E%2F%2E%2E%2Fsecret.txt",
        f"/tasks/{TASK_ID}/outputs/..%2Fother-task%2Fx.png",
        f"/tasks/{TASK_ID}/outputs/%2Fetc%2Fpasswd",
        f"/tasks/{TASK_ID}/outputs/..%5C..%5Csecret.txt",
        "/tasks/..%2F..%2F/outputs/secret.txt",
        "/tasks/../outputs/secret.txt",
        f"/tasks/{TASK_ID}/outputs/%2e%2e",
        f"/results/{TASK_ID}/..%2F..%2Fsecret.txt",
        f"/results/{TASK_ID}/..%2Fother-task%2Fx.png",
        "/results/..%2F..%2F/secret.txt",
        "/results/../secret.txt",
    ],
)
async def test_output_names_cannot_leave_the_task_folder(
    http: httpx.AsyncClient, stored_output: bytes, path: str
) -> None:
    response = await http.get(path)
    assert response.status_code in (400, 404)
    assert b"not for download" not in response.content
    assert response.content != b"other"


async def test_symlink_in_the_task_folder_cannot_point_outside(
    http: httpx.AsyncClient, stored_output: bytes, api_data_dir: Path
) -> None:
    link = api_data_dir / "outputs" / TASK_ID / "link.txt"
    if not link.is_symlink():
        link.symlink_to(api_data_dir / "secret.txt")
    response = await http.get(f"/tasks/{TASK_ID}/outputs/link.txt")
    assert response.status_code == 400
    assert b"not for download" not in response.content
