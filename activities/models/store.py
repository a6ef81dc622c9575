"""ModelStore: the model files a GPU worker has for its ComfyUI, downloading those a job names
by URL into `<models dir>/<folder>/<name>`. One download per file at a time in this process:
concurrent jobs that need the same file wait for the same download and see the same progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from activities.models.cache import ModelCache
from activities.models.download import (
    DownloadProgress,
    ModelCredentials,
    ModelDownloadError,
    download_file,
)
from manifests.model_inputs import FOLDER_DIRECTORIES
from temporal_workflows.failures import ErrorType
from temporal_workflows.payloads import ModelInputRef

logger = logging.getLogger(__name__)

PARTIAL_DIR = "partial"
# What ModelFromUrl.file_name gives: one path component.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


@dataclass
class _Download:
    task: asyncio.Task[None]
    progress: DownloadProgress


class ModelStore:
    """Downloaded models in `models_dir` (a directory the worker's ComfyUI reads), their cache
    (activities/models/cache.py) and the downloads under way."""

    def __init__(
        self,
        models_dir: Path,
        *,
        cache_bytes: int,
        max_model_bytes: int,
        allow_private: bool,
        credentials: ModelCredentials,
    ) -> None:
        self.models_dir = models_dir
        self.cache = ModelCache(models_dir, cache_bytes)
        self.max_model_bytes = max_model_bytes
        self.allow_private = allow_private
        self.credentials = credentials
        self._downloads: dict[str, _Download] = {}
        # A cache that outgrew a smaller limit (a restart with less) shrinks now.
        self.cache.evict()

    def progress(self, ref: ModelInputRef) -> DownloadProgress | None:
        """The download of this file under way, if any."""
        running = self._downloads.get(_key(ref))
        return running.progress if running is not None else None

    async def acquire(self, ref: ModelInputRef) -> Path:
        """The file in its folder, downloaded first if needed; pinned (never evicted) until
        `release`. Raises ModelDownloadError."""
        key = _key(ref)
        if ref.folder not in FOLDER_DIRECTORIES or _NAME.fullmatch(ref.name) is None:
            # Only a workflow started without the API could send this: never write outside.
            raise ModelDownloadError(
                f"'{ref.folder}/{ref.name}' is not a model file this worker downloads",
                type=ErrorType.MODEL_STORE,
                retryable=False,
            )
        self.cache.pin(key)
        try:
            return await self._have(ref, key)
        except BaseException:
            self.cache.unpin(key)
            raise

    def release(self, ref: ModelInputRef) -> None:
        key = _key(ref)
        self.cache.unpin(key)
        if self.cache.get(key) is not None:
            self.cache.evict()

    async def _have(self, ref: ModelInputRef, key: str) -> Path:
        path = self.cache.path(key)
        entry = self.cache.get(key)
        if key not in self._downloads and path.is_file():
            if entry is None:
                return path  # put there by someone else under this very name: used, never evicted
            if ref.sha256 is None or entry.sha256 == ref.sha256:
                self.cache.touch(key)
                return path
            # Asked for other bytes than those cached from this URL: fetch it again, and keep
            # the new file only if it has them.
        running = self._downloads.get(key)
        if running is None:
            progress = DownloadProgress()
            task = asyncio.create_task(self._download(ref, key, progress), name=f"download {key}")
            task.add_done_callback(_retrieve)
            running = self._downloads[key] = _Download(task, progress)
            task.add_done_callback(lambda _: self._downloads.pop(key, None))
        # Shielded: a job cancelled while it waits leaves the download to the others (and to the
        # cache).
        await asyncio.shield(running.task)
        entry = self.cache.get(key)
        if entry is not None and ref.sha256 is not None and entry.sha256 != ref.sha256:
            raise ModelDownloadError(
                f"the file has sha256 {entry.sha256}, not {ref.sha256}",
                type=ErrorType.MODEL_HASH_MISMATCH,
            )
        self.cache.touch(key)
        return path

    async def _download(self, ref: ModelInputRef, key: str, progress: DownloadProgress) -> None:
        partial = self.cache.state_dir / PARTIAL_DIR / f"{key}.part"
        logger.info("downloading %s into %s", ref.url, key)
        try:
            result = await download_file(
                ref.url,
                partial,
                allow_private=self.allow_private,
                limit=self.max_model_bytes,
                credentials=self.credentials,
                progress=progress,
            )
            if ref.sha256 is not None and result.sha256 != ref.sha256:
                partial.unlink(missing_ok=True)  # complete but wrong: nothing to resume
                raise ModelDownloadError(
                    f"the downloaded file has sha256 {result.sha256}, not {ref.sha256}",
                    type=ErrorType.MODEL_HASH_MISMATCH,
                )
            self.cache.evict(room_for=result.size)
            path = self.cache.path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # A rename in the folder: ComfyUI sees the whole file at once, and its listing of
            # the folder refreshes because the folder's mtime changed (folder_paths.py,
            # `cached_filename_list_`).
            os.replace(partial, path)
        except OSError as err:
            raise ModelDownloadError(
                f"cannot store the file: {err}", type=ErrorType.MODEL_STORE, retryable=True
            ) from None
        self.cache.record(key, url=ref.url, sha256=result.sha256, size=result.size)
        logger.info("downloaded %s (%d bytes) into %s", ref.url, result.size, key)


def _key(ref: ModelInputRef) -> str:
    return f"{ref.folder}/{ref.name}"


def _retrieve(task: asyncio.Task[None]) -> None:
    # Every waiter may have been cancelled: read the outcome so asyncio does not log it as lost.
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()
