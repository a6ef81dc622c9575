"""Live views of a running task: its status and progress as Server-Sent Events, and its latest
sampler preview image.

The stream polls Temporal (describe, through `api.tasks.reader.read_task`, the same reading as
GET /tasks/{id}) every POLL_SECONDS and sends an event only when something changed. Event ids are
derived from the task's state, not from a counter kept by this process, so any API replica can
resume a stream from the `Last-Event-ID` a client sends back:

    <attempt>.<stage>.<tick>    compared as a tuple of integers
    stage: 1 preparing, 2 waiting for a GPU worker, 3 being submitted to ComfyUI, 4 downloading
           a model file, 5 queued in ComfyUI, 6 running, 9 finished
    tick:  while running, the worker's time (ms) of the heartbeat that carried the progress; while
           downloading, the bytes done; else 0

A retry raises <attempt>; a later heartbeat raises <tick>; so ids only grow over a task's life, and
a stream never sends an id that is not greater than the last one sent (or than Last-Event-ID).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import StreamingResponse
from temporalio.client import Client
from temporalio.service import RPCError

from activities.io.output_store import OutputPathRefused, OutputStoreError
from api.contract.signed_urls import UrlSigner
from api.contract.task_schemas import TaskPublic
from api.deps import BaseUrlDep, ManifestsDep, OutputStoreDep, TemporalDep, UrlSignerDep
from api.errors import ApiError, InvalidOutputName, OutputStoreUnavailable, TaskNotFound
from api.responses import ErrorBody
from api.tasks.reader import read_task
from manifests.errors import UnknownWorkflow

router = APIRouter(prefix="/tasks", tags=["tasks"])

# Temporal is asked this often per open stream. With the GPU worker's 0.5 s heartbeat flush this
# keeps progress within about a second of ComfyUI reporting it (docs/steering.md has the figure).
POLL_SECONDS = 0.25
# A comment line this often keeps proxies and load balancers from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
# A stream ends after this long and the client reconnects with Last-Event-ID (EventSource does
# so by itself, after RETRY_MS). Bounded streams let the server shut down without waiting on them.
STREAM_SECONDS = 60.0
RETRY_MS = 500

TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELLED"})
_QUEUE_STAGES = {
    "preparing": 1,
    "waiting_for_gpu_worker": 2,
    "submitting_to_comfyui": 3,
    "downloading_model": 4,
    "queued_in_comfyui": 5,
}
_PROGRESS_STAGE = 6
_FINAL_STAGE = 9


@dataclass(frozen=True, order=True)
class EventId:
    """A stream position derived from the task's state (see the module docstring)."""

    attempt: int = 0
    stage: int = 0
    tick: int = 0

    def __str__(self) -> str:
        return f"{self.attempt}.{self.stage}.{self.tick}"

    @classmethod
    def parse(cls, text: str | None) -> EventId | None:
        """The id a client sent back, or None when it is missing or not one of ours."""
        if not text:
            return None
        parts = text.strip().split(".")
        # ASCII digits only: str.isdigit() also takes '²', which int() refuses; and no id of ours
        # is longer than _MAX_PART_DIGITS a part, while int() refuses over 4300 digits.
        if len(parts) != 3 or not all(_is_id_part(p) for p in parts):
            return None
        attempt, stage, tick = (int(p) for p in parts)
        return cls(attempt, stage, tick)


_MAX_PART_DIGITS = 20


def _is_id_part(text: str) -> bool:
    return 0 < len(text) <= _MAX_PART_DIGITS and text.isascii() and text.isdigit()


def event_id_for(task: TaskPublic, attempt: int) -> EventId:
    """The id of the event that reports `task` as it is now; `attempt` is the highest seen."""
    if task.status in TERMINAL_STATUSES:
        return EventId(attempt, _FINAL_STAGE, 0)
    if task.status == "PROGRESS":
        updated = task.progress.updated_at if task.progress else None
        tick = int(updated.timestamp() * 1000) if updated else 0
        return EventId(attempt, _PROGRESS_STAGE, tick)
    stage = _QUEUE_STAGES.get(task.queue.phase, 1) if task.queue else 1
    download = task.queue.download if task.queue else None
    return EventId(attempt, stage, download.bytes_done if download else 0)


def _sse(event: str, event_id: EventId, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class TaskEventStream:
    """The events of one task for one connection, starting after `resume_after`."""

    def __init__(
        self,
        client: Client,
        task_id: str,
        base_url: str,
        resume_after: EventId | None,
        signer: UrlSigner | None = None,
    ) -> None:
        self.client = client
        self.signer = signer
        self.task_id = task_id
        self.base_url = base_url
        self.last = resume_after or EventId()
        self.attempt = max(1, self.last.attempt)

    def next_event(self, task: TaskPublic) -> str | None:
        """The SSE text reporting `task`, or None when it tells nothing the client has not had."""
        if task.queue is not None and task.queue.attempt:
            self.attempt = max(self.attempt, task.queue.attempt)
        event_id = event_id_for(task, self.attempt)
        if event_id <= self.last:
            return None
        same_stage = event_id.attempt == self.last.attempt and event_id.stage == self.last.stage
        self.last = event_id
        if same_stage and task.status == "PROGRESS" and task.progress is not None:
            progress = task.progress.model_dump(mode="json", exclude_none=True)
            return _sse(
                "progress",
                event_id,
                {"task_id": task.task_id, "status": task.status, "progress": progress},
            )
        return _sse("status", event_id, task.model_dump(mode="json", exclude_none=True))

    async def events(self, first: TaskPublic, request: Request) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        started = last_sent = loop.time()
        yield f"retry: {RETRY_MS}\n\n"
        task = first
        while True:
            text = self.next_event(task)
            if text is not None:
                yield text
                last_sent = loop.time()
            if task.status in TERMINAL_STATUSES:
                return
            now = loop.time()
            if now - started > STREAM_SECONDS:
                return  # the client resumes from its Last-Event-ID
            if now - last_sent > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                last_sent = now
            await asyncio.sleep(POLL_SECONDS)
            if await request.is_disconnected():
                return
            try:
                task = await read_task(self.client, self.task_id, self.base_url, self.signer)
            except TaskNotFound:
                return  # removed by retention while we watched
            except RPCError as err:  # Temporal briefly unreachable: say so, keep trying
                yield f": temporal unreachable ({err.message}); retrying\n\n"
                last_sent = loop.time()


@router.get(
    "/{task_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: `status` (the whole task, as GET /tasks/{id}) "
            "when the status or queue phase changes, `progress` while it runs. The stream ends "
            "after the event with the final status (SUCCESS, FAILURE or CANCELLED).",
            "content": {"text/event-stream": {}},
        },
        204: {"description": "Last-Event-ID is the final event: nothing more will come."},
        404: {"description": "No task with this id."},
    },
    summary="Follow a task's status and progress live (Server-Sent Events)",
)
async def task_events(
    task_id: str,
    request: Request,
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    signer: UrlSignerDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    # Read once before answering, so an unknown task is a plain 404 rather than a broken stream.
    first = await read_task(temporal, task_id, base_url, signer)
    stream = TaskEventStream(temporal, task_id, base_url, EventId.parse(last_event_id), signer)
    if first.status in TERMINAL_STATUSES and event_id_for(first, stream.attempt) <= stream.last:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return StreamingResponse(
        stream.events(first, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class PreviewNotFound(ApiError):
    status_code = 404
    error_type = "preview_not_found"


def _image_type(data: bytes) -> str:
    # ComfyUI sends latent previews as JPEG and some nodes as PNG (comfyui-protocol.md §3.3).
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


@router.get(
    "/{task_id}/preview",
    response_class=Response,
    responses={
        200: {
            "description": "The latest sampler preview (usually JPEG).",
            "content": {"image/jpeg": {}, "image/png": {}},
        },
        400: {"model": ErrorBody, "description": "The task id cannot name a task folder."},
        404: {"description": "No such task, or no preview right now (with the reason)."},
        503: {"model": ErrorBody, "description": "Temporal or the output store did not answer."},
    },
    summary="The latest sampler preview of a running task",
)
async def task_preview(
    task_id: str,
    store: OutputStoreDep,
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    manifests: ManifestsDep,
) -> Response:
    try:
        data = await store.read_preview(task_id)
    except OutputPathRefused as err:
        raise InvalidOutputName(str(err), loc=["path", "task_id"]) from err
    except OutputStoreError as err:
        raise OutputStoreUnavailable(str(err)) from err
    if data is not None:
        return Response(data, media_type=_image_type(data), headers={"Cache-Control": "no-store"})
    task = await read_task(temporal, task_id, base_url)  # 404 for an unknown task
    raise PreviewNotFound(await _why_no_preview(task, manifests), loc=["path", "task_id"])


async def _why_no_preview(task: TaskPublic, manifests: ManifestsDep) -> str:
    if task.status in TERMINAL_STATUSES:
        return f"task '{task.task_id}' has finished ({task.status}); previews exist while it runs"
    previews_on = None
    if task.workflow_id:
        try:
            previews_on = (await manifests.get(task.workflow_id)).previews
        except UnknownWorkflow:
            previews_on = None
    if previews_on is False:
        return (
            f"workflow '{task.workflow_id}' does not turn on previews "
            "(set `previews: true` in its manifest entry)"
        )
    return (
        f"task '{task.task_id}' has no preview yet ({task.status}): one appears after its "
        "sampler's first step, when ComfyUI sends previews"
    )
