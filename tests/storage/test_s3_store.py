"""S3OutputStore against a real S3 server process: large files go up in parts, a commit is a
manifest written last, and a task keeps exactly one attempt's files whatever order attempts end
in."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from activities.io.output_store import OutputStoreError, open_output_store
from activities.io.s3_store import MULTIPART_CHUNK, S3OutputStore
from tests.support.s3_server import MotoServer


def _store(bucket: str, tmp_path: Path, prefix: str = "team-a") -> S3OutputStore:
    store = open_output_store(f"s3://{bucket}/{prefix}", tmp_path / "data")
    assert isinstance(store, S3OutputStore)
    return store


def _stage(store: S3OutputStore, task_id: str, attempt: str, files: dict[str, bytes]) -> list[Path]:
    folder = store.staging_dir(task_id, attempt)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def _keys(server: MotoServer, bucket: str, prefix: str) -> list[str]:
    listing = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


async def test_a_64_mb_output_goes_up_in_parts_and_downloads_whole_by_its_presigned_url(
    s3_server: MotoServer, bucket: str, tmp_path: Path
):
    store = _store(bucket, tmp_path)
    data = os.urandom(64 * 1024 * 1024 + 1)
    (staged,) = _stage(store, "video-task", "attempt-1", {"clip_00001_.mp4": data})

    (stored,) = await store.commit("video-task", [staged], run_id="run-1", attempt=1)

    assert stored.store_key is not None
    head = s3_server.client().head_object(
        Bucket=bucket, Key=store.key(stored.store_key), PartNumber=1
    )
    # S3 answers a multipart object's ETag as "<md5 of the part md5s>-<part count>".
    parts = -(-len(data) // MULTIPART_CHUNK)
    assert head["ETag"].strip('"').endswith(f"-{parts}")
    assert head["PartsCount"] == parts
    assert (stored.size, stored.sha256, stored.content_type) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
        "video/mp4",
    )
    async with httpx.AsyncClient(trust_env=False, timeout=60) as http:
        response = await http.get(store.presigned_url(stored.store_key, 60))
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "video/mp4"
    assert 'filename="clip_00001_.mp4"' in response.headers["content-disposition"]


async def test_a_commit_is_one_attempts_files_under_its_prefix_and_a_manifest_written_last(
    s3_server: MotoServer, bucket: str, tmp_path: Path
):
    store = _store(bucket, tmp_path)
    # A worker that died mid-upload: its files are there, its manifest never was.
    dead = _stage(store, "task-1", "attempt-1", {"gen_00001_.png": b"half"})
    dead_key = store.key("outputs/task-1/run-1.1.dead/gen_00001_.png")
    s3_server.client().put_object(Bucket=bucket, Key=dead_key, Body=dead[0].read_bytes())
    assert await store.output_names("task-1") == []  # nothing committed: nothing to read

    staged = _stage(store, "task-1", "attempt-2", {"gen_00002_.png": b"second!"})
    stored = await store.commit("task-1", staged, run_id="run-1", attempt=2)

    assert await store.output_names("task-1") == ["gen_00002_.png"]
    keys = _keys(s3_server, bucket, "team-a/outputs/task-1/")
    assert keys == sorted(
        ["team-a/outputs/task-1/manifest.json", store.key(stored[0].store_key or "")]
    )
    found = await store.find_output("task-1", "gen_00002_.png")
    assert found is not None and found.store_key == stored[0].store_key
    assert await store.find_output("task-1", "gen_00001_.png") is None


async def test_an_attempt_that_commits_second_keeps_the_first_attempts_files(
    s3_server: MotoServer, bucket: str, tmp_path: Path
):
    """A worker cut off mid-job comes back after the retry on another host has committed (or
    the other way round): the first commit stands, the late attempt's upload is dropped."""
    first_host = _store(bucket, tmp_path / "host-a")
    second_host = _store(bucket, tmp_path / "host-b")
    winner = await second_host.commit(
        "task-2",
        _stage(second_host, "task-2", "attempt-2", {"gen_00002_.png": b"retry"}),
        run_id="run-1",
        attempt=2,
    )
    late = await first_host.commit(
        "task-2",
        _stage(first_host, "task-2", "attempt-1", {"gen_00001_.png": b"zombie"}),
        run_id="run-1",
        attempt=1,
    )

    assert late == winner
    keys = _keys(s3_server, bucket, "team-a/outputs/task-2/")
    assert len(keys) == 2 and keys[1].endswith("/gen_00002_.png"), keys


async def test_a_new_run_of_the_same_task_id_replaces_the_earlier_runs_outputs(
    s3_server: MotoServer, bucket: str, tmp_path: Path
):
    store = _store(bucket, tmp_path)
    await store.commit(
        "task-3", _stage(store, "task-3", "a", {"old.png": b"old"}), run_id="run-1", attempt=1
    )
    await store.commit(
        "task-3", _stage(store, "task-3", "b", {"new.png": b"new"}), run_id="run-2", attempt=1
    )
    assert await store.output_names("task-3") == ["new.png"]
    assert len(_keys(s3_server, bucket, "team-a/outputs/task-3/")) == 2


async def test_inputs_and_previews_live_under_the_prefix(
    s3_server: MotoServer, bucket: str, tmp_path: Path
):
    store = _store(bucket, tmp_path)
    name = await store.write_input(b"\x89PNG\r\n\x1a\nbytes", "png")
    assert await store.write_input(b"\x89PNG\r\n\x1a\nbytes", "png") == name  # same bytes
    assert await store.read_input(name) == b"\x89PNG\r\n\x1a\nbytes"
    assert await store.read_preview("task-4") is None
    await store.write_preview("task-4", b"jpeg")
    assert await store.read_preview("task-4") == b"jpeg"
    await store.discard_preview("task-4")
    assert await store.read_preview("task-4") is None
    assert _keys(s3_server, bucket, "team-a/") == [f"team-a/inputs/{name}"]


async def test_a_store_that_does_not_answer_is_an_output_store_error(
    s3_server: MotoServer, bucket: str, tmp_path: Path
):
    store = _store(bucket, tmp_path)
    staged = _stage(store, "task-5", "attempt-1", {"gen.png": b"x"})
    s3_server.stop()
    with pytest.raises(OutputStoreError, match="task-5"):
        await store.commit("task-5", staged, run_id="run-1", attempt=1)


@pytest.mark.parametrize("location", ["s3://", "gs://bucket/x", "file://otherhost/x"])
def test_locations_it_cannot_use_are_refused(location: str, tmp_path: Path):
    with pytest.raises(ValueError):
        open_output_store(location, tmp_path)


@pytest.mark.parametrize(
    "command",
    [["api"], ["control-worker"], ["gpu-worker", "--comfyui-url", "http://127.0.0.1:9"]],
)
def test_the_commands_refuse_an_output_store_they_cannot_use(command: list[str], tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "api.cli.main", *command, "--data-dir", str(tmp_path)]
        + ["--output-store", "gs://bucket/outputs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "--output-store" in done.stderr and "s3://bucket/prefix" in done.stderr
