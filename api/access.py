"""Who may call the API: optional API keys, and signed, expiring download URLs.

API keys come as `Authorization: Bearer <key>` or `X-API-Key: <key>`. With no keys configured the
API is open, which the CLI allows only on a loopback address (`check_bind_access`). Download URLs
in task results carry `?expires=<unix>&sig=<hex>`, an HMAC-SHA256 over "<task_id>/<filename>/
<expires>", so a client can fetch outputs without the key, only that file and only until then.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from api.errors import ApiError

SIGNING_KEY_FILE = "url-signing.key"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class Unauthorized(ApiError):
    """No API key, or a wrong one, where keys are required."""

    status_code = 401
    error_type = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="comfy-temporal"'}


class DownloadForbidden(ApiError):
    """A download URL whose signature is wrong or whose time is up."""

    status_code = 403
    error_type = "download_forbidden"


class InsecureBind(Exception):
    """Serving without API keys on an address other machines can reach."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and the usual names for them; everything else counts as reachable."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind_access(host: str, api_keys: Iterable[str], *, insecure_no_auth: bool) -> None:
    """Raises InsecureBind unless the API is on loopback, has keys, or the user said so."""
    if is_loopback(host) or any(api_keys) or insecure_no_auth:
        return
    raise InsecureBind(
        f"refusing to serve the API on {host} without API keys: anyone who can reach that "
        "address could start jobs and read every output. Set COMFY_API_KEYS=key1,key2 (or "
        "--api-keys-file FILE), or pass --insecure-no-auth if a proxy in front does the access "
        "control."
    )


def parse_api_keys(text: str | None) -> tuple[str, ...]:
    """Keys from a comma- or newline-separated text (env or file); '#' starts a comment line."""
    if not text:
        return ()
    keys: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        keys.extend(part.strip() for part in line.split(",") if part.strip())
    return tuple(keys)


def read_api_keys_file(path: Path) -> tuple[str, ...]:
    return parse_api_keys(path.read_text(encoding="utf-8"))


class ApiKeys:
    """The configured keys; comparison in constant time so timing tells nothing about a key."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def matches_any(self, presented: Iterable[str]) -> bool:
        """One of the presented keys is valid (a client may send both headers)."""
        return any([self.matches(key) for key in presented])  # all compared, no short cut

    def matches(self, presented: str | None) -> bool:
        if not presented or not self._digests:
            return False
        digest = hashlib.sha256(presented.encode()).digest()
        found = False
        for known in self._digests:  # no early exit: every key is compared every time
            found |= hmac.compare_digest(digest, known)
        return found


def presented_keys(authorization: str | None, x_api_key: str | None) -> list[str]:
    """The keys a request carries: `X-API-Key` and the token of `Authorization: Bearer`."""
    keys: list[str] = []
    if x_api_key and x_api_key.strip():
        keys.append(x_api_key.strip())
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            keys.append(token.strip())
    return keys


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The first key a request carries (X-API-Key before Authorization), if any."""
    keys = presented_keys(authorization, x_api_key)
    return keys[0] if keys else None


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


class UrlSigner:
    """Signs and checks download URLs of output files."""

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds

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
            missing = "expires" if not expires else "sig"
            raise DownloadForbidden(
                f"the download URL has no '{missing}'; use the URL from the task result",
                loc=["query", missing],
            )
        if not expires.isdigit() or len(expires) > 12:
            raise DownloadForbidden(
                "'expires' must be a unix time in seconds", loc=["query", "expires"]
            )
        expected = self._digest(task_id, filename, int(expires))
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise DownloadForbidden(
                "the download URL's signature does not match; use the URL from the task result",
                loc=["query", "sig"],
            )
        if int(expires) < (now if now is not None else time.time()):
            raise DownloadForbidden(
                "the download URL has expired; read the task again for a fresh one",
                loc=["query", "expires"],
            )
