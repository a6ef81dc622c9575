"""Finds a task's committed output file for download, without ever leaving its outputs.

The output store decides which names are safe (one plain path component, `check_name`) and which
files are the task's (a local folder, or an object store's committed manifest); this module turns
its answers into HTTP errors.
"""

from __future__ import annotations

from activities.io.output_store import OutputPathRefused, OutputStore, StoredFile, check_name
from api.errors import InvalidOutputName, OutputNotFound

_MAX_NAME_BYTES = 255  # one path component (the store refuses longer names)


async def resolve_output(store: OutputStore, task_id: str, filename: str) -> StoredFile:
    """The committed file, or InvalidOutputName (escape attempt) / OutputNotFound.

    Raises OutputStoreError when the store cannot be read."""
    for name in (task_id, filename):
        if len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
            # No file system holds such a name, so no task has such an output.
            raise OutputNotFound(
                f"task '{task_id[:64]}' has no output file named {filename[:64]!r}…",
                loc=["path", "filename" if name is filename else "task_id"],
            )
    try:
        check_name("task id", task_id)
    except OutputPathRefused as err:
        raise InvalidOutputName(str(err), loc=["path", "task_id"]) from err
    try:
        stored = await store.find_output(task_id, filename)
    except OutputPathRefused as err:
        raise InvalidOutputName(str(err), loc=["path", "filename"]) from err
    if stored is None:
        # The task id is the wrong part when the task has no files at all.
        if not await store.output_names(task_id):
            raise OutputNotFound(
                f"task '{task_id}' has no output files (no such task, or none saved yet)",
                loc=["path", "task_id"],
            )
        raise OutputNotFound(
            f"task '{task_id}' has no output file named {filename!r}", loc=["path", "filename"]
        )
    return stored
