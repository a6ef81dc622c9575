"""Fixtures for webhook tests: a webhook receiver on loopback, and a generation stack whose control
worker (the one that delivers webhooks) a test can stop and start again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from temporalio.client import Client

from activities.generation.webhooks import WebhookActivities
from tests.support.loopback_http import serve_on_loopback
from tests.support.stack import GenerationStack, private_pool_stack
from tests.support.webhooks import PUBLIC_URL, WEBHOOK_SECRET, WebhookReceiver


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with serve_on_loopback(app) as port:
        hook.url = f"http://127.0.0.1:{port}/hook"
        yield hook


@pytest.fixture
async def webhook_stack(temporal_client: Client, tmp_path: Path) -> AsyncIterator[GenerationStack]:
    """`sampled_image` on a pool of its own, a restartable control worker that signs webhooks
    with WEBHOOK_SECRET, and GPU workers on demand."""
    async with private_pool_stack(
        temporal_client,
        tmp_path,
        "hook",
        webhooks=WebhookActivities(WEBHOOK_SECRET, allow_private=True),
        public_url=PUBLIC_URL,
    ) as stack:
        yield stack
