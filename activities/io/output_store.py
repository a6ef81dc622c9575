"""The output store: generated files on local disk, under `<data-dir>/outputs/<task_id>/<filename>`.

Each attempt writes into its own staging folder; only a finished attempt is moved into place, so
a retried or interrupted attempt never leaves partial files or duplicates beside the real ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from activities.io.media_types import content_type_for

# Longest name most filesystems accept for one path component.
_MAX_NAME_BYTES = 255


class OutputStoreError(Exception):
    """The store cannot be written (full disk, a lost network mount, a blocked path): transient,
    so the attempt is retried."""


class OutputPathRefused(OutputStoreError):
    """A task id or filename that would leave the store: refused on every attempt alike."""


@dataclass(frozen=True)
class StoredFile:
    """One file as placed in the store."""

    filename: str
    path: Path
    size: int
    sha256: str
    content_type: str


def _check_name(kind: str, name: str) -> str:
    """One plain path component. Task ids may be any workflow id (scheduled runs contain ':'),
    and ComfyUI filenames may contain spaces: refuse only what could leave the folder."""
    problem = None
    if not name or name in {".", ".."}:
        problem = "must be a plain name"
    elif "/" in name or "\\" in name:
        problem = "must not contain a path separator"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        problem = "must not contain control characters"
    elif len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        problem = f"must be at most {_MAX_NAME_BYTES} bytes"
    if problem:
        raise OutputPathRefused(f"invalid {kind} {name!r}: {problem}")
    return name


class OutputStore:
    """Local-directory store shared by GPU workers (same host or shared volume) and the API."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir).resolve() / "outputs"
        # Beside the outputs (same filesystem, so moving a file in is an atomic rename), never
        # inside them: no task id can name it.
        self.staging_root = Path(data_dir).resolve() / "outputs-staging"
        # The latest sampler preview of a running task; never among its outputs (a commit
        # replaces the task's folder content).
        self.previews_root = Path(data_dir).resolve() / "previews"
        # Images requests bring inline (base64), stored by the API at submission and read by the
        # GPU worker, so they never travel through Temporal. Content-addressed: <sha256>.<ext>.
        self.inputs_root = Path(data_dir).resolve() / "inputs"

    def task_dir(self, task_id: str) -> Path:
        return self.root / _check_name("task id", task_id)

    def path_for(self, task_id: str, filename: str) -> Path:
        """Where a task's output lives; refuses any name that would escape the task's folder."""
        path = (self.task_dir(task_id) / _check_name("filename", filename)).resolve()
        if path.parent != self.task_dir(task_id).resolve():
            raise OutputPathRefused(f"invalid filename {filename!r}")
        return path

    def files(self, task_id: str) -> list[Path]:
        folder = self.task_dir(task_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file())

    def _staging_path(self, task_id: str, attempt_key: str) -> Path:
        return (
            self.staging_root
            / _check_name("task id", task_id)
            / _check_name("attempt", attempt_key)
        )

    def staging_dir(self, task_id: str, attempt_key: str) -> Path:
        """A fresh, empty folder for one attempt's files (outside the task's visible folder)."""
        folder = self._staging_path(task_id, attempt_key)
        try:
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        except OSError as err:
            raise OutputStoreError(f"cannot create the staging folder of {task_id}: {err}") from err
        return folder

    async def commit(self, task_id: str, staged: list[Path]) -> list[StoredFile]:
        """Move an attempt's staged files into the task's folder, replacing earlier copies."""
        return await asyncio.to_thread(self._commit, task_id, staged)

    def _commit(self, task_id: str, staged: list[Path]) -> list[StoredFile]:
        try:
            return self._move_into_place(task_id, staged)
        except OSError as err:
            raise OutputStoreError(f"cannot write the outputs of {task_id}: {err}") from err

    def _move_into_place(self, task_id: str, staged: list[Path]) -> list[StoredFile]:
        target = self.task_dir(task_id)
        target.mkdir(parents=True, exist_ok=True)
        # The task's folder holds exactly one attempt's outputs: files an earlier attempt placed
        # (ComfyUI numbers its files, so a rerun's names can differ) are removed.
        keep = {source.name for source in staged}
        for old in target.iterdir():
            if old.is_file() and old.name not in keep:
                old.unlink()
        stored: list[StoredFile] = []
        for source in staged:
            destination = self.path_for(task_id, source.name)
            digest = _sha256(source)
            size = source.stat().st_size
            # Same filesystem: an atomic rename, so readers never see half a file.
            source.replace(destination)
            content_type = content_type_for(destination.name)
            stored.append(StoredFile(destination.name, destination, size, digest, content_type))
        return stored

    def input_path(self, input_file: str) -> Path:
        """Where a stored request input lives; refuses names that would leave the folder."""
        return self.inputs_root / _check_name("input file", input_file)

    async def write_input(self, data: bytes, extension: str) -> str:
        """Store request input bytes under their sha256; returns the name to reference them by."""
        return await asyncio.to_thread(self._write_input, data, extension)

    def _write_input(self, data: bytes, extension: str) -> str:
        name = f"{hashlib.sha256(data).hexdigest()}.{extension}"
        path = self.input_path(name)
        if path.is_file() and path.stat().st_size == len(data):
            return name  # the same bytes, stored by an earlier request
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{name}.{uuid.uuid4().hex}.partial")
            partial.write_bytes(data)
            partial.replace(path)
        except OSError as err:
            raise OutputStoreError(f"cannot store the input {name}: {err}") from err
        return name

    async def read_input(self, input_file: str) -> bytes:
        return await asyncio.to_thread(self.input_path(input_file).read_bytes)

    def preview_path(self, task_id: str) -> Path:
        """Where a running task's latest preview image is (JPEG or PNG, as ComfyUI sent it)."""
        return self.previews_root / _check_name("task id", task_id)

    async def write_preview(self, task_id: str, data: bytes) -> None:
        """Replace the task's preview atomically: readers see the old image or the new one."""
        await asyncio.to_thread(self._write_preview, task_id, data)

    def _write_preview(self, task_id: str, data: bytes) -> None:
        path = self.preview_path(task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        partial.replace(path)

    def discard_preview(self, task_id: str) -> None:
        try:
            self.preview_path(task_id).unlink(missing_ok=True)
        except OutputStoreError:
            return

    def discard_staging(self, task_id: str, attempt_key: str) -> None:
        try:
            folder = self._staging_path(task_id, attempt_key)
        except OutputStoreError:
            return  # never created
        shutil.rmtree(folder, ignore_errors=True)
        parent = folder.parent
        try:
            parent.rmdir()
        except OSError:
            pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
