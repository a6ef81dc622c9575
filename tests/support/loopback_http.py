"""An aiohttp application served on 127.0.0.1 at a free port, for tests that need a server of
their own to call (image URLs, webhook receivers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serve_on_loopback(app: web.Application) -> AsyncIterator[int]:
    """Serves `app` until the block ends; yields the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()
