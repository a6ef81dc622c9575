"""Who may call the API: the optional API keys, and the check that an open API stays local.

API keys come as `Authorization: Bearer <key>` or `X-API-Key: <key>`. With no keys configured the
API is open, which the CLI allows only on a loopback address (`check_bind_access`). Downloads can
also be reached with a signed URL instead of a key (`api.contract.signed_urls`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from api.errors import ApiError

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class Unauthorized(ApiError):
    """No API key, or a wrong one, where keys are required."""

    status_code = 401
    error_type = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="comfy-temporal"'}


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
