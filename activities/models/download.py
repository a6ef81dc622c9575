"""Downloading one model file: streamed into a partial file that a later attempt resumes (HTTP
Range), under a size cap, hashed on the way, with credentials from the worker's environment.

The address policy is the image inputs' (activities/io/outbound_urls.py), checked at every hop
right before connecting, and the connection goes to the checked address. Tokens go only over
https and only to the host they are configured for, so a redirect to another host (a CDN's signed
URL) never carries them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx

from activities.io.outbound_urls import UrlRefused, check_url, pinned_request
from temporal_workflows.failures import ErrorType

MAX_REDIRECTS = 5
CHUNK_BYTES = 1 << 20
# A stalled transfer fails (and is retried, resuming) rather than holding a GPU slot forever.
TIMEOUT = httpx.Timeout(30.0, read=60.0)
HF_HOSTS = ("huggingface.co", "hf.co")


class ModelDownloadError(Exception):
    """A download that failed; `retryable` when another attempt may succeed."""

    def __init__(self, reason: str, *, type: ErrorType, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.type = type
        self.retryable = retryable


@dataclass(frozen=True)
class ModelCredentials:
    """Bearer tokens by host: HF_TOKEN for the Hugging Face Hub, COMFY_MODEL_TOKENS for others."""

    tokens: Mapping[str, str]

    @classmethod
    def parse(cls, hf_token: str | None, model_tokens: str | None) -> ModelCredentials:
        tokens: dict[str, str] = {}
        if hf_token:
            tokens.update({host: hf_token for host in HF_HOSTS})
        for item in (model_tokens or "").split(","):
            host, sep, token = item.strip().partition("=")
            if sep and host.strip() and token.strip():
                tokens[host.strip().lower()] = token.strip()
        return cls(tokens)

    def headers_for(self, scheme: str, host: str) -> dict[str, str]:
        token = self.tokens.get(host.lower())
        if token is None or scheme.lower() != "https":
            return {}
        return {"Authorization": f"Bearer {token}"}


@dataclass
class DownloadProgress:
    """Shared by every job waiting for the same file."""

    bytes_done: int = 0
    bytes_total: int | None = None


@dataclass(frozen=True)
class DownloadedFile:
    sha256: str
    size: int


async def download_file(
    url: str,
    partial: Path,
    *,
    allow_private: bool,
    limit: int,
    credentials: ModelCredentials,
    progress: DownloadProgress,
) -> DownloadedFile:
    """Complete `partial` with the bytes at `url`, resuming what an earlier attempt left there.

    Raises ModelDownloadError; the partial file stays for the next attempt unless it cannot be
    of use (over the limit, or the server's file changed under it).
    """
    partial.parent.mkdir(parents=True, exist_ok=True)
    meta = partial.with_name(partial.name + ".json")
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False, follow_redirects=False) as http:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                target = await check_url(current, allow_private=allow_private)
            except UrlRefused as err:
                raise ModelDownloadError(f"url {err}", type=ErrorType.MODEL_URL_REFUSED) from None
            offset = partial.stat().st_size if partial.exists() else 0
            headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
            headers.update(credentials.headers_for(target.parts.scheme, target.host))
            if offset:
                headers["Range"] = f"bytes={offset}-"
                validator = _validator(meta)
                if validator:
                    # The server sends the whole file instead if it changed since the first part.
                    headers["If-Range"] = validator
            try:
                response = await http.send(
                    pinned_request(http, "GET", target, headers=headers), stream=True
                )
                try:
                    if response.is_redirect and "location" in response.headers:
                        current = urljoin(current, response.headers["location"])
                        continue
                    if response.status_code == 416 and offset:
                        # What we hold is no prefix of the file any more: start again.
                        partial.unlink(missing_ok=True)
                        continue
                    return await _receive(response, partial, meta, offset, limit, progress)
                finally:
                    await response.aclose()
            except httpx.HTTPError as err:
                done = partial.stat().st_size if partial.exists() else 0
                reason = str(err) or type(err).__name__
                raise ModelDownloadError(
                    f"download interrupted after {done} bytes ({reason}); a retry resumes it",
                    type=ErrorType.MODEL_UNAVAILABLE,
                    retryable=True,
                ) from None
        raise ModelDownloadError(
            f"url redirects more than {MAX_REDIRECTS} times", type=ErrorType.MODEL_UNAVAILABLE
        )


async def _receive(
    response: httpx.Response,
    partial: Path,
    meta: Path,
    offset: int,
    limit: int,
    progress: DownloadProgress,
) -> DownloadedFile:
    status = response.status_code
    if status not in (200, 206):
        raise ModelDownloadError(
            f"url answered {status}",
            type=ErrorType.MODEL_UNAVAILABLE,
            retryable=status >= 500 or status in (408, 429),
        )
    total: int | None = None
    if status == 206:
        start, total = _content_range(response.headers.get("content-range", ""))
        if start != offset:
            raise ModelDownloadError(
                "url answered a range other than the one asked for",
                type=ErrorType.MODEL_UNAVAILABLE,
                retryable=True,
            )
    else:
        offset = 0  # the whole file: the server has no ranges, or the file changed
        declared = response.headers.get("content-length", "")
        total = int(declared) if declared.isdigit() else None
        meta.write_text(
            json.dumps(
                {k: response.headers[k] for k in ("etag", "last-modified") if k in response.headers}
            ),
            encoding="utf-8",
        )
    if total is not None and total > limit:
        partial.unlink(missing_ok=True)
        raise ModelDownloadError(
            f"url serves {total} bytes; the limit is {limit}", type=ErrorType.MODEL_TOO_LARGE
        )
    hasher = await asyncio.to_thread(_hash_prefix, partial, offset)
    progress.bytes_total = total
    progress.bytes_done = offset
    with partial.open("r+b" if offset else "wb") as file:
        file.seek(offset)
        file.truncate()
        pending: list[bytes] = []
        buffered = 0
        try:
            # As received (no chunker that would drop what it holds when the connection breaks),
            # written a megabyte at a time off the event loop.
            async for chunk in response.aiter_bytes():
                if progress.bytes_done + len(chunk) > limit:
                    pending.clear()
                    file.close()
                    partial.unlink(missing_ok=True)
                    raise ModelDownloadError(
                        f"url serves more than the limit of {limit} bytes",
                        type=ErrorType.MODEL_TOO_LARGE,
                    )
                hasher.update(chunk)
                pending.append(chunk)
                buffered += len(chunk)
                progress.bytes_done += len(chunk)
                if buffered >= CHUNK_BYTES:
                    data, pending, buffered = b"".join(pending), [], 0
                    await asyncio.to_thread(_write, file, data)
        finally:
            if pending and not file.closed:
                # What arrived before a cut stays for the retry to resume from.
                _write(file, b"".join(pending))
    if total is not None and progress.bytes_done != total:
        raise ModelDownloadError(
            f"connection closed after {progress.bytes_done} of {total} bytes; a retry resumes it",
            type=ErrorType.MODEL_UNAVAILABLE,
            retryable=True,
        )
    meta.unlink(missing_ok=True)
    return DownloadedFile(sha256=hasher.hexdigest(), size=progress.bytes_done)


def _write(file, chunk: bytes) -> None:  # type: ignore[no-untyped-def]
    file.write(chunk)
    file.flush()  # what arrived stays for a resume, even if the process dies next


def _hash_prefix(path: Path, length: int) -> hashlib._Hash:
    hasher = hashlib.sha256()
    if length:
        with path.open("rb") as file:
            remaining = length
            while remaining:
                block = file.read(min(CHUNK_BYTES, remaining))
                if not block:
                    break
                hasher.update(block)
                remaining -= len(block)
    return hasher


def _content_range(value: str) -> tuple[int, int | None]:
    """`bytes <start>-<end>/<total|*>` -> (start, total)."""
    try:
        unit, _, spec = value.partition(" ")
        span, _, size = spec.partition("/")
        start = int(span.split("-", 1)[0])
        if unit.lower() != "bytes":
            raise ValueError(value)
    except ValueError:
        return -1, None
    return start, int(size) if size.isdigit() else None


def _validator(meta: Path) -> str | None:
    try:
        saved = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    etag = saved.get("etag")
    # A weak ETag cannot validate a range (RFC 9110 §13.1.5); a date can.
    if isinstance(etag, str) and not etag.startswith("W/"):
        return etag
    modified = saved.get("last-modified")
    return modified if isinstance(modified, str) else None
