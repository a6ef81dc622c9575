"""One generation stack for every suite: the API over real HTTP on loopback, a control worker
(inside the API, or on a task queue of the stack's own), and GPU workers (in-process GpuWorker
objects, activities/workers/gpu.py) each driving a ComfyUI emulator process, on any Temporal."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.comfyui.client import ComfyUIClient
from activities.generation.prepare import prepared_prompt
from activities.generation.webhooks import WebhookActivities
from activities.workers.control import build_control_worker
from activities.workers.gpu import GpuWorker, GpuWorkerSettings
from activities.workers.recycling import RecyclePolicy
from activities.workers.settings import RoutingSettings
from activities.workers.temporal_client import connect_temporal
from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.contract.task_schemas import TaskPublic
from api.generations.start import generation_start
from api.schemas import GenerateOptions
from api.settings import Settings
from api.tasks.reader import read_task
from manifests.definitions import DEFAULT_POOL
from manifests.registry import ManifestRegistry
from manifests.render import render_prompt
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.names import CONTROL_TASK_QUEUE, REQUEST_MEMO
from temporal_workflows.payloads import GenerationOptions, GenerationRequest
from tests.support.emulator import EmulatorHandle, emulator_process
from tests.support.manifests import (
    SAMPLED_IMAGE_WORKFLOW_ID,
    valid_registry,
    write_sampled_image_manifests,
)
from tests.support.waiting import wait_for

# Where the control worker runs: "api" inside the API (on the shared control queue, as
# `comfy-temporal api --with-control-worker`), "own" on a queue of this stack alone (restartable),
# None nowhere (the test runs one itself, or needs none).
ControlWorker = Literal["api", "own"] | None


def unique(prefix: str) -> str:
    """`prefix` with a random suffix: names that concurrent stacks on one Temporal never share."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclass
class RunningGpuWorker:
    worker: GpuWorker
    emulator: EmulatorHandle
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def name(self) -> str:
        return self.worker.settings.name

    async def comfy_queue(self) -> dict[str, Any]:
        async with ComfyUIClient(self.emulator.url) as comfy:
            return await comfy.queue()

    async def shutdown(self) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 60)
        finally:
            await self.emulator.process.stop(grace=5.0)  # already stopped unless the worker hung


@dataclass
class GenerationStack:
    client: Client
    address: str
    base_dir: Path
    registry: ManifestRegistry | None = None
    pool: str = DEFAULT_POOL
    control_queue: str = CONTROL_TASK_QUEUE
    url: str = ""  # the API's base URL; empty when the stack runs no API
    emulator_args: tuple[str, ...] = ()
    webhooks: WebhookActivities | None = None
    public_url: str | None = None  # base URL of download links in tasks read from Temporal
    gpu_workers: list[RunningGpuWorker] = field(default_factory=list)
    routing: RoutingSettings | None = None  # the control worker's; None: from the environment
    _control: contextlib.AsyncExitStack | None = None

    @property
    def data_dir(self) -> Path:
        """The output store, shared by the API and the GPU workers."""
        return self.base_dir / "data"

    @property
    def worker_name(self) -> str:
        return self.gpu_workers[0].name

    @property
    def comfyui_url(self) -> str:
        return self.gpu_workers[0].emulator.url

    async def set_emulator_faults(self, **faults: Any) -> None:
        """Replace the first GPU worker's emulator faults, e.g. fail_on_node="ImageInvert"."""
        await self.gpu_workers[0].emulator.set_faults(**faults)

    async def start_gpu_worker(
        self,
        name: str | None = None,
        *,
        shutdown_grace: float = 5.0,
        inventory_interval: float | None = None,
        model_settings: dict[str, Any] | None = None,
        recycle: RecyclePolicy | None = None,
        **emulator_kwargs: Any,
    ) -> RunningGpuWorker:
        """A GPU worker on the stack's pool driving an emulator of its own; returns once it
        polls. `model_settings` go to its GpuWorkerSettings (e.g. model_cache_bytes),
        `emulator_kwargs` to the emulator's ComfyUIProcess."""
        name = name or unique("gpu")
        extra_args = emulator_kwargs.pop("extra_args", self.emulator_args)
        # Model files by URL land here, which the emulator reads as an extra model path.
        models_dir = self.base_dir / "models" / name
        process = emulator_process(
            self.base_dir / "comfyui" / name,
            extra_args=extra_args,
            name=f"emulator:{name}",
            models_dir=models_dir,
            **emulator_kwargs,
        )
        settings = GpuWorkerSettings(
            name=name,
            pool=self.pool,
            data_dir=self.data_dir,
            shutdown_grace=timedelta(seconds=shutdown_grace),
            control_queue=self.control_queue,
            models_dir=models_dir,
            **(model_settings or {}),
            recycle=recycle or RecyclePolicy(),
        )
        if inventory_interval is not None:
            settings.inventory_interval = timedelta(seconds=inventory_interval)
        # Its own connection, as a separate process would have: the SDK refuses two Workers on
        # one task queue over the same client.
        client = await connect_temporal(self.address)
        worker = GpuWorker(client, process, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop), name=f"gpu worker {name}")
        running = RunningGpuWorker(worker, EmulatorHandle(process, process.work_dir), stop, task)
        self.gpu_workers.append(running)

        async def polling() -> bool:
            if task.done():
                task.result()  # raises why the worker stopped
            return worker.polling.is_set()

        await wait_for(polling, f"GPU worker {name} to poll", 60)
        return running

    async def stop_gpu_workers(self) -> None:
        for running in self.gpu_workers:
            await running.shutdown()

    async def start_control_worker(self) -> Worker:
        """A control worker on the stack's queue, with its own connection as a new process
        would have; the stack's `webhooks` sign and send the notifications."""
        assert self.registry is not None, "a control worker serves the stack's registry"
        client = await connect_temporal(self.address)
        worker = build_control_worker(
            client,
            self.registry,
            task_queue=self.control_queue,
            identity=unique("control"),
            webhooks=self.webhooks,
            routing=self.routing,
        )
        self._control = contextlib.AsyncExitStack()
        await self._control.enter_async_context(worker)
        return worker

    async def stop_control_worker(self) -> None:
        if self._control is not None:
            control, self._control = self._control, None
            await control.aclose()

    async def submit(
        self,
        params: dict[str, Any] | None = None,
        *,
        workflow_id: str = SAMPLED_IMAGE_WORKFLOW_ID,
        worker: str | None = None,
        callback_url: str | None = None,
        task_id: str | None = None,
        rendered: bool = False,
    ) -> WorkflowHandle[Any, Any]:
        """Starts GenerationWorkflow on the stack's control queue directly, without the API;
        `rendered`: as POST /generate starts it, with the graph rendered and the search
        attributes set (needs the stack's registry), else with the bare request."""
        if rendered:
            return await self._submit_rendered(params or {}, workflow_id, worker, task_id)
        request = GenerationRequest(
            workflow_id=workflow_id,
            params=params or {},
            options=GenerationOptions(
                worker=worker, callback_url=callback_url, public_url=self.public_url
            ),
        )
        return await self.client.start_workflow(
            GenerationWorkflow.run,
            request,
            id=task_id or f"gen-{uuid.uuid4()}",
            task_queue=self.control_queue,
            memo={REQUEST_MEMO: request.model_dump(mode="json")},  # as POST /generate does
        )

    async def _submit_rendered(
        self, params: dict[str, Any], workflow_id: str, worker: str | None, task_id: str | None
    ) -> WorkflowHandle[Any, Any]:
        assert self.registry is not None, "rendering needs the stack's registry"
        manifest = self.registry.get(workflow_id)
        prepared = prepared_prompt(
            manifest, render_prompt(manifest, params, revision=manifest.revision)
        )
        options = GenerateOptions(worker=worker) if worker else None
        start = generation_start(manifest, params, options, prepared=prepared)
        return await self.client.start_workflow(
            GenerationWorkflow.run,
            start.request,
            id=task_id or f"gen-{uuid.uuid4()}",
            task_queue=self.control_queue,
            search_attributes=start.search_attributes,
            memo=start.memo,
        )

    async def task(self, task_id: str) -> TaskPublic:
        """The task as GET /tasks/{id} shows it."""
        return await read_task(self.client, task_id, self.public_url or "")

    async def wait_for_webhook(self, task_id: str, state: str, timeout: float = 60.0) -> TaskPublic:
        async def reached() -> TaskPublic | None:
            task = await self.task(task_id)
            return task if task.webhook is not None and task.webhook.status == state else None

        return await wait_for(reached, f"webhook of {task_id} to be {state}", timeout)


@contextlib.asynccontextmanager
async def generation_stack(
    client: Client,
    base_dir: Path,
    registry: ManifestRegistry | None = None,
    *,
    address: str | None = None,
    api: bool = True,
    control_worker: ControlWorker = "api",
    pool: str = DEFAULT_POOL,
    gpu_workers: Sequence[str] = (),
    emulator_args: Sequence[str] = (),
    webhooks: WebhookActivities | None = None,
    public_url: str | None = None,
    routing: RoutingSettings | None = None,
    **settings: Any,
) -> AsyncIterator[GenerationStack]:
    """The stack over `client`'s Temporal (`address` for the connections workers open), serving
    `registry` (None: the API's default manifests). `gpu_workers` are started before it is
    yielded; more with `start_gpu_worker`. `settings` are the API's; `routing` is the control
    worker's and the API's. Everything it started is stopped at the end, GPU workers first."""
    assert api or control_worker != "api", "a control worker inside the API needs the API"
    stack = GenerationStack(
        client,
        address or client.service_client.config.target_host,
        base_dir,
        registry,
        pool=pool,
        control_queue=unique("control") if control_worker == "own" else CONTROL_TASK_QUEUE,
        emulator_args=tuple(emulator_args),
        webhooks=webhooks,
        public_url=public_url,
        routing=routing,
    )
    async with contextlib.AsyncExitStack() as running:
        if control_worker == "own":
            await stack.start_control_worker()
            running.push_async_callback(stack.stop_control_worker)
        if api:
            if routing is not None:  # the API routes first tries at submit, alike
                settings.setdefault("routing", routing.routing)
                settings.setdefault("affinity_wait_seconds", routing.affinity_wait_seconds)
            app = create_app(
                Settings(
                    data_dir=stack.data_dir,
                    embedded_control_worker=control_worker == "api",
                    **settings,
                ),
                temporal_client=client,
                registry=registry,
            )
            stack.url = await running.enter_async_context(serve_in_background(app))
        running.push_async_callback(stack.stop_gpu_workers)
        for name in gpu_workers:
            await stack.start_gpu_worker(name)
        yield stack


@contextlib.asynccontextmanager
async def private_pool_stack(
    client: Client,
    base_dir: Path,
    pool_prefix: str,
    *,
    stall_timeout: float | None = None,
    **options: Any,
) -> AsyncIterator[GenerationStack]:
    """`sampled_image` (with a stall limit if given) on a pool of its own, a control worker on a
    queue of its own and no API; GPU workers on demand (`await stack.start_gpu_worker(name)`).
    `options` go to generation_stack (webhooks, public_url, ...)."""
    pool = unique(pool_prefix)
    registry = valid_registry(
        *write_sampled_image_manifests(base_dir, pool, stall_timeout=stall_timeout)
    )
    # Every job really executes (real jobs differ by seed anyway); caching is not the topic.
    async with generation_stack(
        client,
        base_dir,
        registry,
        api=False,
        control_worker="own",
        pool=pool,
        emulator_args=["--cache-none"],
        **options,
    ) as stack:
        yield stack


@contextlib.asynccontextmanager
async def api_without_gpu_workers(
    base_dir: Path, client: Client, pool: str
) -> AsyncIterator[httpx.AsyncClient]:
    """An API (with its control worker) serving IDLE_POOL_WORKFLOW_ID on `pool`, which no GPU
    worker polls: its jobs wait for a GPU until they are cancelled. Yields an HTTP client."""
    from tests.support.manifests import idle_pool_registry

    async with (
        generation_stack(client, base_dir, idle_pool_registry(base_dir, pool)) as stack,
        httpx.AsyncClient(base_url=stack.url) as http,
    ):
        yield http
