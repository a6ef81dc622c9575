"""The GPU worker's cache of downloaded model files: an index (JSON, in the models directory it
describes) of the files it downloaded, with their size, hash and last use, so the least recently
used ones are deleted when the cache exceeds its limit. Files the index does not list (the
operator's) are never deleted; files a running job uses are not either. The index survives
restarts: a worker that starts again knows what it downloaded before.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Our own files under the models directory: none of ComfyUI's model folders, so never listed.
STATE_DIR = ".comfy-temporal"
INDEX_FILE = "index.json"
INDEX_VERSION = 1


@dataclass
class CachedModel:
    """One downloaded file, keyed by "<folder>/<name>" relative to the models directory."""

    url: str
    sha256: str
    size: int
    downloaded_at: float
    last_used: float


class ModelCache:
    """What this worker downloaded into `models_dir`, and LRU eviction down to `limit_bytes`."""

    def __init__(self, models_dir: Path, limit_bytes: int) -> None:
        self.models_dir = models_dir
        self.limit_bytes = limit_bytes
        self.state_dir = models_dir / STATE_DIR
        self._index_path = self.state_dir / INDEX_FILE
        self._entries: dict[str, CachedModel] = self._load()
        self._pins: dict[str, int] = {}

    def path(self, key: str) -> Path:
        return self.models_dir / key

    def get(self, key: str) -> CachedModel | None:
        return self._entries.get(key)

    @property
    def entries(self) -> dict[str, CachedModel]:
        return dict(self._entries)

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    def pin(self, key: str) -> None:
        """A running job uses the file: eviction leaves it alone until `unpin`."""
        self._pins[key] = self._pins.get(key, 0) + 1

    def unpin(self, key: str) -> None:
        count = self._pins.get(key, 0) - 1
        if count > 0:
            self._pins[key] = count
        else:
            self._pins.pop(key, None)

    def touch(self, key: str) -> None:
        """Mark a use, for the LRU order."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_used = time.time()
            self._save()

    def record(self, key: str, *, url: str, sha256: str, size: int) -> None:
        now = time.time()
        self._entries[key] = CachedModel(url, sha256, size, downloaded_at=now, last_used=now)
        self._save()

    def evict(self, room_for: int = 0) -> list[str]:
        """Delete least recently used, unpinned downloads until they and `room_for` more bytes
        fit the limit; returns the keys deleted. Pinned files may keep the cache above it."""
        total = self.size
        removed: list[str] = []
        for key, entry in sorted(self._entries.items(), key=lambda item: item[1].last_used):
            if total + room_for <= self.limit_bytes:
                break
            if key in self._pins:
                continue
            try:
                self.path(key).unlink(missing_ok=True)
            except OSError as err:
                logger.warning("could not delete cached model %s: %s", key, err)
                continue
            total -= entry.size
            removed.append(key)
            del self._entries[key]
        if removed:
            logger.info("model cache: evicted %s", ", ".join(removed))
            self._save()
        return removed

    def _load(self) -> dict[str, CachedModel]:
        try:
            data = json.loads(self._index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            logger.warning("model cache index %s unreadable (%s): empty", self._index_path, err)
            return {}
        entries: dict[str, CachedModel] = {}
        for key, raw in (data.get("files") or {}).items():
            try:
                entry = CachedModel(**raw)
            except TypeError:
                continue
            # A file deleted by hand while the worker was down is simply forgotten.
            if self.path(key).is_file():
                entries[key] = entry
        return entries

    def _save(self) -> None:
        # Written aside and renamed: a crash mid-write leaves the previous index, never half of one.
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "version": INDEX_VERSION,
            "files": {key: asdict(entry) for key, entry in sorted(self._entries.items())},
        }
        temporary = self._index_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, self._index_path)
