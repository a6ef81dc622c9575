"""A loopback HTTP server of model files for the download tests: HTTP Range like a CDN, a count
of requests per file, and two faults: a connection cut after N bytes (once), and a download held
half-way until the test lets it finish."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.loopback_http import serve_on_loopback


@dataclass
class ModelServer:
    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    # (file name, Range header or None) of every request, in order.
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    # File name -> bytes after which the next response drops the connection (once).
    cut_after: dict[str, int] = field(default_factory=dict)
    # File name -> event: responses send the first half, then wait for it.
    held: dict[str, asyncio.Event] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def count(self, name: str) -> int:
        return sum(1 for requested, _ in self.requests if requested == name)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        ranged = request.headers.get("Range")
        self.requests.append((name, ranged))
        data = self.files.get(name)
        if data is None:
            return web.Response(status=404)
        start = 0
        if ranged:
            match = re.fullmatch(r"bytes=(\d+)-", ranged)
            assert match is not None, ranged
            start = int(match.group(1))
            if start >= len(data):
                return web.Response(status=416)
        headers = {
            "Content-Length": str(len(data) - start),
            "Accept-Ranges": "bytes",
            "ETag": f'"{hashlib.sha256(data).hexdigest()[:16]}"',
        }
        if ranged:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response = web.StreamResponse(status=206 if ranged else 200, headers=headers)
        await response.prepare(request)
        body = data[start:]
        cut = self.cut_after.pop(name, None)
        if cut is not None:
            await response.write(body[:cut])
            assert request.transport is not None
            request.transport.close()  # the client sees a body shorter than Content-Length
            return response
        gate = self.held.get(name)
        if gate is not None:
            half = len(body) // 2
            await response.write(body[:half])
            await gate.wait()
            body = body[half:]
        await response.write(body)
        await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def model_server() -> AsyncIterator[ModelServer]:
    """A ModelServer on 127.0.0.1 serving `files` at /<name>."""
    server = ModelServer()
    app = web.Application()
    app.router.add_get("/{name}", server.serve)
    async with serve_on_loopback(app) as port:
        server.base = f"http://127.0.0.1:{port}"
        yield server


def model_bytes(size: int, seed: int = 0) -> bytes:
    """`size` bytes that differ per seed (a stand-in for a model file)."""
    block = hashlib.sha256(f"model-{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]
