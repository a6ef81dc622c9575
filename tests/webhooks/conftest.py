"""Fixtures for webhook tests: a webhook receiver on loopback, and a generation stack whose control
worker (the one that delivers webhooks) a test can stop and start again."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.generation.webhooks import WebhookActivities
from activities.workers.control import build_control_worker
from activities.workers.temporal_client import connect_temporal
from api.schemas import TaskPublic
from api.tasks.reader import read_task
from manifests.registry import ManifestRegistry
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.payloads import GenerationOptions, GenerationRequest
from tests.support.emulator import StartEmulator
from tests.support.loopback_http import serve_on_loopback
from tests.support.waiting import wait_for
from tests.workflows.conftest import WORKFLOWS_YAML, GenerationStack, write_sampled_image_manifests

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


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with serve_on_loopback(app) as port:
        hook.url = f"http://127.0.0.1:{port}/hook"
        yield hook


@dataclass
class WebhookStack(GenerationStack):
    """GenerationStack (tests/workflows) plus a restartable control worker that signs webhooks."""

    registry: ManifestRegistry | None = None
    _control: contextlib.AsyncExitStack | None = None

    async def start_control_worker(self) -> Worker:
        # Its own connection, as a new process would have.
        client = await connect_temporal(self.address)
        assert self.registry is not None
        worker = build_control_worker(
            client,
            self.registry,
            task_queue=self.control_queue,
            identity=f"control-{uuid.uuid4().hex[:6]}",
            webhooks=WebhookActivities(WEBHOOK_SECRET, allow_private=True),
        )
        self._control = contextlib.AsyncExitStack()
        await self._control.enter_async_context(worker)
        return worker

    async def stop_control_worker(self) -> None:
        if self._control is not None:
            control, self._control = self._control, None
            await control.aclose()

    async def submit_with_callback(
        self, callback_url: str, params: dict[str, Any] | None = None
    ) -> WorkflowHandle:
        request = GenerationRequest(
            workflow_id="sampled_image",
            params=params or {},
            options=GenerationOptions(callback_url=callback_url, public_url=PUBLIC_URL),
        )
        return await self.client.start_workflow(
            GenerationWorkflow.run,
            request,
            id=f"hook-{uuid.uuid4()}",
            task_queue=self.control_queue,
            memo={"request": request.model_dump(mode="json")},  # as POST /generate does
        )

    async def task(self, task_id: str) -> TaskPublic:
        """The task as GET /tasks/{id} shows it."""
        return await read_task(self.client, task_id, PUBLIC_URL)

    async def wait_for_webhook(self, task_id: str, state: str, timeout: float = 60.0) -> TaskPublic:
        async def reached() -> TaskPublic | None:
            task = await self.task(task_id)
            return task if task.webhook is not None and task.webhook.status == state else None

        return await wait_for(reached, f"webhook of {task_id} to be {state}", timeout)


@pytest.fixture
async def webhook_stack(
    temporal_client: Client, temporal_address: str, start_emulator: StartEmulator, tmp_path: Path
) -> AsyncIterator[WebhookStack]:
    pool = f"hook-{uuid.uuid4().hex[:10]}"
    manifests_dir, workflows_dir = write_sampled_image_manifests(
        tmp_path, WORKFLOWS_YAML.format(pool=pool)
    )
    stack = WebhookStack(
        temporal_client,
        temporal_address,
        pool,
        f"control-{uuid.uuid4()}",
        tmp_path / "data",
        start_emulator,
        registry=ManifestRegistry(manifests_dir, workflows_dir),
    )
    await stack.start_control_worker()
    try:
        yield stack
    finally:
        for running in stack.gpu_workers:
            await running.shutdown()
        await stack.stop_control_worker()
