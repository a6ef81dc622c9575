"""Finds a task's output file for download without ever leaving `<outputs>/<task_id>/`.

The output store decides which names are safe (`OutputStore.path_for`: one plain path component,
resolved inside the task's folder); this module turns its refusals into HTTP errors.
"""

from __future__ import annotations

from pathlib import Path

from activities.io.output_store import OutputStore, OutputStoreError
from api.errors import InvalidOutputName, OutputNotFound

_MAX_NAME_BYTES = 255  # one path component (OutputStore refuses longer names)


def resolve_output(data_dir: Path, task_id: str, filename: str) -> Path:
    """The file's path, or InvalidOutputName (escape attempt) / OutputNotFound."""
    for name in (task_id, filename):
        if len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
            # No file system holds such a name, so no task has such an output.
            raise OutputNotFound(
                f"task '{task_id[:64]}' has no output file named {filename[:64]!r}…",
                loc=["path", "filename" if name is filename else "task_id"],
            )
    store = OutputStore(data_dir)
    try:
        store.task_dir(task_id)
    except OutputStoreError as err:
        raise InvalidOutputName(str(err), loc=["path", "task_id"]) from err
    try:
        path = store.path_for(task_id, filename)
    except OutputStoreError as err:
        raise InvalidOutputName(str(err), loc=["path", "filename"]) from err
    if not path.is_file():
        if not path.parent.is_dir():  # the task id is the wrong part: it has no files at all
            raise OutputNotFound(
                f"task '{task_id}' has no output files (no such task, or none saved yet)",
                loc=["path", "task_id"],
            )
        raise OutputNotFound(
            f"task '{task_id}' has no output file named {filename!r}", loc=["path", "filename"]
        )
    return path
