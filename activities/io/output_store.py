"""The output store: where generated files, image inputs and previews live. `OutputStore` is the
interface; `LocalOutputStore` keeps them in a directory, activities/io/s3_store.py in an S3 bucket.

`open_output_store` picks one from `--output-store` (env COMFY_OUTPUT_STORE): a path or `file://`
URL is a directory, `s3://bucket/prefix` a bucket; nothing means `<data-dir>`. Both keep the same
guarantee: a task's outputs are those of exactly one attempt (docs/storage.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from activities.io.media_types import content_type_for

# Longest name most filesystems accept for one path component.
_MAX_NAME_BYTES = 255

OUTPUT_STORE_ENV = "COMFY_OUTPUT_STORE"


class OutputStoreError(Exception):
    """The store cannot be written or read (full disk, a lost network mount, an object store that
    does not answer): transient, so the attempt is retried."""


class OutputPathRefused(OutputStoreError):
    """A task id or filename that would leave the store: refused on every attempt alike."""


@dataclass(frozen=True)
class StoredFile:
    """One committed output file: `path` in a local store, `store_key` (under the store's prefix)
    in an object store."""

    filename: str
    size: int
    sha256: str | None
    content_type: str
    path: Path | None = None
    store_key: str | None = None


def check_name(kind: str, name: str) -> str:
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


def content_disposition(filename: str) -> str:
    """`attachment` with the file's name, as Starlette's FileResponse writes it."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class OutputStore(ABC):
    """What GPU workers and the API need of a store.

    GPU workers let ComfyUI's files land in a local staging folder per attempt (always on the
    worker's own disk), then `commit` them; the API stores image inputs, reads previews and
    finds committed outputs for download.
    """

    def __init__(self, staging_root: Path) -> None:
        self.staging_root = staging_root

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is, for logs and banners."""

    # ---- GPU worker: one attempt's outputs

    def _staging_path(self, task_id: str, attempt_key: str) -> Path:
        return (
            self.staging_root / check_name("task id", task_id) / check_name("attempt", attempt_key)
        )

    def staging_dir(self, task_id: str, attempt_key: str) -> Path:
        """A fresh, empty folder for one attempt's files (outside the task's visible outputs)."""
        folder = self._staging_path(task_id, attempt_key)
        try:
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        except OSError as err:
            raise OutputStoreError(f"cannot create the staging folder of {task_id}: {err}") from err
        return folder

    def discard_staging(self, task_id: str, attempt_key: str) -> None:
        try:
            folder = self._staging_path(task_id, attempt_key)
        except OutputStoreError:
            return  # never created
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()
        except OSError:
            pass

    @abstractmethod
    async def commit(
        self, task_id: str, staged: list[Path], *, run_id: str = "", attempt: int = 1
    ) -> list[StoredFile]:
        """Make an attempt's staged files the task's outputs. Returns the task's outputs as
        committed, which may be an earlier attempt's of the same run if that one committed first
        (its files are then the task's, and this attempt's are dropped)."""

    # ---- API: downloads

    @abstractmethod
    async def find_output(self, task_id: str, filename: str) -> StoredFile | None:
        """A committed output of the task, or None; OutputPathRefused for a name that could
        leave the task's outputs."""

    @abstractmethod
    async def output_names(self, task_id: str) -> list[str]:
        """The task's committed output filenames, sorted."""

    def presigned_url(self, store_key: str, expires_in: int) -> str | None:
        """A URL that serves the object without credentials for `expires_in` seconds; None when
        the store has no such URLs (a local directory)."""
        return None

    def stream(self, stored: StoredFile) -> AsyncIterator[bytes]:
        """The file's bytes, for a download the API serves itself."""
        raise NotImplementedError(f"{type(self).__name__} serves files by path")

    # ---- image inputs: written by the API, read by the GPU worker

    @abstractmethod
    async def write_input(self, data: bytes, extension: str) -> str:
        """Store request input bytes under their sha256; returns the name to reference them by."""

    @abstractmethod
    async def read_input(self, input_file: str) -> bytes: ...

    # ---- previews: written by the GPU worker while a task runs, read by the API

    @abstractmethod
    async def write_preview(self, task_id: str, data: bytes) -> None:
        """Replace the task's preview: readers see the old image or the new one."""

    @abstractmethod
    async def read_preview(self, task_id: str) -> bytes | None: ...

    @abstractmethod
    async def discard_preview(self, task_id: str) -> None:
        """Remove the preview; never raises (a preview is a nicety)."""


class LocalOutputStore(OutputStore):
    """A directory: `<root>/outputs/<task_id>/<filename>`, `<root>/inputs/`, `<root>/previews/`.

    One host, or hosts sharing the directory (a network volume). Each attempt writes into its own
    staging folder beside the outputs (same filesystem, so moving a file in is an atomic rename);
    a commit replaces the task's folder content with that attempt's files.
    """

    def __init__(self, root: Path) -> None:
        root = Path(root).resolve()
        # Beside the outputs, never inside them: no task id can name it.
        super().__init__(root / "outputs-staging")
        self.root = root / "outputs"
        # The latest sampler preview of a running task; never among its outputs (a commit
        # replaces the task's folder content).
        self.previews_root = root / "previews"
        # Images requests bring inline (base64), stored by the API at submission and read by the
        # GPU worker, so they never travel through Temporal. Content-addressed: <sha256>.<ext>.
        self.inputs_root = root / "inputs"

    @property
    def location(self) -> str:
        return str(self.root)

    def task_dir(self, task_id: str) -> Path:
        return self.root / check_name("task id", task_id)

    def path_for(self, task_id: str, filename: str) -> Path:
        """Where a task's output lives; refuses any name that would escape the task's folder."""
        path = (self.task_dir(task_id) / check_name("filename", filename)).resolve()
        if path.parent != self.task_dir(task_id).resolve():
            raise OutputPathRefused(f"invalid filename {filename!r}")
        return path

    def files(self, task_id: str) -> list[Path]:
        folder = self.task_dir(task_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file())

    async def output_names(self, task_id: str) -> list[str]:
        return [p.name for p in await asyncio.to_thread(self.files, task_id)]

    async def find_output(self, task_id: str, filename: str) -> StoredFile | None:
        path = self.path_for(task_id, filename)
        try:
            size = (await asyncio.to_thread(path.stat)).st_size
        except OSError:
            return None
        if not path.is_file():
            return None
        return StoredFile(filename, size, None, content_type_for(filename), path=path)

    async def commit(
        self, task_id: str, staged: list[Path], *, run_id: str = "", attempt: int = 1
    ) -> list[StoredFile]:
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
            digest = sha256_of(source)
            size = source.stat().st_size
            # Same filesystem: an atomic rename, so readers never see half a file.
            source.replace(destination)
            stored.append(
                StoredFile(
                    destination.name,
                    size,
                    digest,
                    content_type_for(destination.name),
                    path=destination,
                )
            )
        return stored

    def input_path(self, input_file: str) -> Path:
        """Where a stored request input lives; refuses names that would leave the folder."""
        return self.inputs_root / check_name("input file", input_file)

    async def write_input(self, data: bytes, extension: str) -> str:
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
        try:
            return await asyncio.to_thread(self.input_path(input_file).read_bytes)
        except OSError as err:
            raise OutputStoreError(f"cannot read the input {input_file}: {err}") from err

    def preview_path(self, task_id: str) -> Path:
        """Where a running task's latest preview image is (JPEG or PNG, as ComfyUI sent it)."""
        return self.previews_root / check_name("task id", task_id)

    async def write_preview(self, task_id: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_preview, task_id, data)

    def _write_preview(self, task_id: str, data: bytes) -> None:
        path = self.preview_path(task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        partial.replace(path)

    async def read_preview(self, task_id: str) -> bytes | None:
        path = self.preview_path(task_id)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def discard_preview(self, task_id: str) -> None:
        try:
            self.preview_path(task_id).unlink(missing_ok=True)
        except (OSError, OutputStoreError):
            return


def open_output_store(location: str | None, data_dir: Path) -> OutputStore:
    """The store `--output-store` names: None or "" = `<data-dir>`, a path or `file://` URL = that
    directory, `s3://bucket/prefix` = that bucket (endpoint and credentials from the standard AWS
    variables and files). Staging folders stay under `<data-dir>` for an object store.

    Raises ValueError for a location it cannot use.
    """
    if not location:
        return LocalOutputStore(data_dir)
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        from activities.io.s3_store import S3OutputStore

        if not parts.netloc:
            raise ValueError(
                f"output store {location!r}: s3:// needs a bucket (s3://bucket/prefix)"
            )
        return S3OutputStore(
            parts.netloc, parts.path.lstrip("/"), staging_root=Path(data_dir) / "outputs-staging"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"output store {location!r}: file:// URLs name a local path")
        return LocalOutputStore(Path(unquote(parts.path)))
    if scheme and len(scheme) > 1:  # "C:\\..." is a path, "gs://..." is not
        raise ValueError(
            f"output store {location!r}: use a directory, file://PATH or s3://bucket/prefix"
        )
    return LocalOutputStore(Path(location).expanduser())
