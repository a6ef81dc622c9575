"""Waiting for a condition by polling it, with a deadline that fails the test (never a bare sleep
standing in for synchronisation)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

DEADLINE = 30.0


async def wait_for(
    predicate: Callable[[], Awaitable[T]],
    what: str,
    timeout: float = DEADLINE,
    interval: float = 0.05,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; fail with `what`
    after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


async def poll_json(
    http: httpx.AsyncClient,
    path: str,
    condition: Callable[[dict[str, Any]], bool],
    timeout: float,
    interval: float = 0.05,
) -> dict[str, Any]:
    """GET `path` every `interval` seconds until `condition(body)` holds; returns that body."""

    async def body_if_met() -> dict[str, Any] | None:
        body: dict[str, Any] = (await http.get(path)).json()
        return body if condition(body) else None

    return await wait_for(body_if_met, f"GET {path} to meet the condition", timeout, interval)


async def poll_task(
    http: httpx.AsyncClient,
    task_id: str,
    condition: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> dict[str, Any]:
    """GET /tasks/{id} until `condition(body)` holds; returns that body."""
    return await poll_json(http, f"/tasks/{task_id}", condition, timeout)
