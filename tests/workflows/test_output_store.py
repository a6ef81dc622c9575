"""The output store: names that cannot leave a task's folder, and one attempt's files per task."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.io.output_store import LocalOutputStore, OutputStoreError


@pytest.mark.parametrize("filename", ["../secret", "a/b.png", "..", ".", "", "x\\y", "a\x00b"])
def test_path_for_refuses_names_that_could_leave_the_task_folder(tmp_path: Path, filename: str):
    with pytest.raises(OutputStoreError, match="invalid filename"):
        LocalOutputStore(tmp_path).path_for("task-1", filename)


@pytest.mark.parametrize("task_id", ["../other", "..", "a/b"])
def test_path_for_refuses_task_ids_that_could_leave_the_store(tmp_path: Path, task_id: str):
    with pytest.raises(OutputStoreError, match="invalid task id"):
        LocalOutputStore(tmp_path).path_for(task_id, "out.png")


def test_scheduled_run_ids_and_filenames_with_spaces_are_accepted(tmp_path: Path):
    store = LocalOutputStore(tmp_path)
    path = store.path_for("nightly-2026-11-27T08:47:34Z", "my image_00001_.png")
    assert path == tmp_path.resolve() / "outputs" / "nightly-2026-11-27T08:47:34Z" / (
        "my image_00001_.png"
    )


async def test_a_later_attempt_replaces_the_files_of_an_earlier_one(tmp_path: Path):
    store = LocalOutputStore(tmp_path)
    first = store.staging_dir("task-1", "attempt-1")
    (first / "gen_00001_.png").write_bytes(b"first")
    await store.commit("task-1", [first / "gen_00001_.png"])
    second = store.staging_dir("task-1", "attempt-2")
    (second / "gen_00002_.png").write_bytes(b"second!")
    stored = await store.commit("task-1", [second / "gen_00002_.png"])

    assert [p.name for p in store.files("task-1")] == ["gen_00002_.png"]
    assert (stored[0].filename, stored[0].size, stored[0].content_type) == (
        "gen_00002_.png",
        7,
        "image/png",
    )
    store.discard_staging("task-1", "attempt-1")
    store.discard_staging("task-1", "attempt-2")
    assert not (tmp_path / "outputs-staging" / "task-1").exists()
