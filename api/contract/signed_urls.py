"""Signed, expiring download URLs of output files, and the key they are signed with.

Download URLs in task results and webhooks carry `?expires=<unix>&sig=<hex>`, an HMAC-SHA256 over
"<task_id>/<filename>/<expires>", so a client can fetch outputs without an API key, only that
file and only until then. The API and a control worker load the same key (`load_signing_key`).
Files in an object store get the store's presigned URL instead (docs/storage.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlencode

SIGNING_KEY_FILE = "url-signing.key"


class DownloadForbidden(Exception):
    """A download URL whose signature is wrong or whose time is up (the API answers 403)."""

    def __init__(self, message: str, *, param: Literal["expires", "sig"]) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def load_signing_key(data_dir: Path, configured: str | None) -> bytes:
    """The URL signing secret: the configured one, else `<data-dir>/url-signing.key`, created
    once (mode 0600) so restarts and API replicas sharing the data dir accept the same URLs."""
    if configured:
        return configured.encode()
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{SIGNING_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode() + b"\n")
        finally:
            os.close(fd)
        try:
            # link() fails if another process created the file first: theirs wins, complete.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable signing key; delete it to create a new one")
    return key.encode()


@dataclass(frozen=True)
class SignedQuery:
    expires: int
    sig: str

    def query(self) -> str:
        return urlencode({"expires": self.expires, "sig": self.sig})


class StoreLinks(Protocol):
    """An object store that hands out presigned URLs of its objects (activities/io/s3_store.py)."""

    def presigned_url(self, store_key: str, expires_in: int) -> str | None: ...


class UrlSigner:
    """Signs and checks download URLs of output files. With `store_links`, download URLs of files
    in an object store are the store's own presigned URLs (clients fetch from the store)."""

    def __init__(
        self, key: bytes, ttl_seconds: int, *, store_links: StoreLinks | None = None
    ) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds
        self.store_links = store_links

    def _digest(self, task_id: str, filename: str, expires: int) -> str:
        # Filenames never contain "/" (OutputStore refuses them) and expires is digits, so the
        # message reads back unambiguously from the right.
        message = f"{task_id}/{filename}/{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, task_id: str, filename: str, *, now: float | None = None) -> SignedQuery:
        expires = int(now if now is not None else time.time()) + self.ttl_seconds
        return SignedQuery(expires=expires, sig=self._digest(task_id, filename, expires))

    def sign_until(self, task_id: str, filename: str, expires: int) -> SignedQuery:
        return SignedQuery(expires=expires, sig=self._digest(task_id, filename, expires))

    def verify(
        self,
        task_id: str,
        filename: str,
        expires: str | None,
        sig: str | None,
        *,
        now: float | None = None,
    ) -> None:
        """Raises DownloadForbidden naming what is wrong with the URL."""
        if not expires or not sig:
            missing: Literal["expires", "sig"] = "expires" if not expires else "sig"
            raise DownloadForbidden(
                f"the download URL has no '{missing}'; use the URL from the task result",
                param=missing,
            )
        if not expires.isdigit() or len(expires) > 12:
            raise DownloadForbidden("'expires' must be a unix time in seconds", param="expires")
        expected = self._digest(task_id, filename, int(expires))
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise DownloadForbidden(
                "the download URL's signature does not match; use the URL from the task result",
                param="sig",
            )
        if int(expires) < (now if now is not None else time.time()):
            raise DownloadForbidden(
                "the download URL has expired; read the task again for a fresh one",
                param="expires",
            )
