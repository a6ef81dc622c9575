"""Page tokens of the listings: Temporal's opaque token, tagged with an HMAC so that only tokens
this API issued reach Temporal (it answers a garbled one with UNKNOWN, which its client retries
for seconds before giving up)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Protocol

from temporalio.service import RPCError, RPCStatusCode

from api.errors import InvalidQuery

_TAG_BYTES = 12


class PageTokens:
    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"page-token\n" + key).digest()

    def _tag(self, raw: bytes) -> bytes:
        return hmac.new(self._key, raw, hashlib.sha256).digest()[:_TAG_BYTES]

    def encode(self, raw: bytes | None) -> str | None:
        if not raw:
            return None
        return base64.urlsafe_b64encode(self._tag(raw) + raw).decode()

    def decode(self, text: str | None) -> bytes | None:
        """Temporal's token, or InvalidQuery naming page_token when this API did not issue it."""
        if not text:
            return None
        try:
            data = base64.urlsafe_b64decode(text.encode())
        except (binascii.Error, ValueError, UnicodeEncodeError) as err:
            raise _not_ours() from err
        tag, raw = data[:_TAG_BYTES], data[_TAG_BYTES:]
        if not raw or not hmac.compare_digest(tag, self._tag(raw)):
            raise _not_ours()
        return raw


class Listing(Protocol):
    """A Temporal listing (of workflows or of schedules) that fetches one page at a time."""

    async def fetch_next_page(self, *, page_size: int | None = None) -> None: ...


async def fetch_page(listing: Listing, token: bytes | None) -> None:
    """Fetch the listing's page; a token of ours that Temporal cannot read is InvalidQuery."""
    try:
        await listing.fetch_next_page()
    except RPCError as err:
        if token is not None and err.status in (
            RPCStatusCode.INVALID_ARGUMENT,
            RPCStatusCode.UNKNOWN,
        ):
            # Ours, but Temporal cannot read it any more (e.g. from an older server).
            raise _not_ours() from err
        raise


def _not_ours() -> InvalidQuery:
    return InvalidQuery("not a page token from this API", loc=["query", "page_token"])
