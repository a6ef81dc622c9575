"""A webhook receiver on loopback that records what it is sent and answers as a test tells it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.waiting import wait_for

WEBHOOK_SECRET = "test-webhook-secret"
PUBLIC_URL = "http://api.example.test"


@dataclass
class ReceivedWebhook:
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Answers POSTs with the next status of `answers` (then 200) and records every request."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    received: list[ReceivedWebhook] = field(default_factory=list)
    down: bool = False  # answer 503 to everything while set

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(ReceivedWebhook(await request.read(), dict(request.headers)))
        if self.down:
            return web.Response(status=503, text="down for maintenance")
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[ReceivedWebhook]:
        async def enough() -> bool:
            return len(self.received) >= count

        await wait_for(enough, f"{count} webhook request(s)", timeout)
        return self.received
