"""Finds a task's output file for download without ever leaving `<outputs>/<task_id>/`.

Both the task id and the file name must be one plain path component (no separators, no `..`,
no NUL), and the resolved path, symlinks followed, must still lie inside the task's folder.
"""

from __future__ import annotations

from pathlib import Path

from api.errors import InvalidOutputName, OutputNotFound


def _check_component(value: str, what: str, loc: str) -> None:
    if (
        not value
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or "\x00" in value
        or Path(value).is_absolute()
    ):
        raise InvalidOutputName(
            f"{what} must be a plain file name inside the task's folder, got {value!r}",
            loc=["path", loc],
        )


def resolve_output(outputs_dir: Path, task_id: str, filename: str) -> Path:
    """The file's path, or InvalidOutputName (escape attempt) / OutputNotFound."""
    _check_component(task_id, "task id", "task_id")
    _check_component(filename, "file name", "filename")
    task_dir = (outputs_dir / task_id).resolve()
    path = (task_dir / filename).resolve()
    if not path.is_relative_to(task_dir) or task_dir.parent != outputs_dir.resolve():
        raise InvalidOutputName(
            f"file name {filename!r} points outside the task's folder", loc=["path", "filename"]
        )
    if not path.is_file():
        raise OutputNotFound(
            f"task '{task_id}' has no output file named {filename!r}", loc=["path", "filename"]
        )
    return path
