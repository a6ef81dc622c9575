"""Runs the API with uvicorn inside a running event loop, stopped by its owner, not by signals.

`comfy-temporal dev` / `api`, the tests and the benchmark all serve the app this way; the owner
installs its own signal handling so it can stop the other processes in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

from activities.io.ports import free_port


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_in_background(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_level: str = "warning",
    startup_timeout: float = 30.0,
) -> AsyncIterator[str]:
    """Serves `app` until the block ends; yields its base URL once it accepts connections."""
    port = port or free_port(host)
    server = ApiServer(
        uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
    )
    serving = asyncio.create_task(server.serve(), name=f"api:{port}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + startup_timeout
    try:
        while not server.started:
            if serving.done():
                serving.result()  # raises the startup error
                raise RuntimeError(f"the API on {host}:{port} stopped during startup")
            if loop.time() > deadline:
                raise TimeoutError(f"the API on {host}:{port} did not start in {startup_timeout} s")
            await asyncio.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await serving
