"""The task as GET /tasks/{id} answers it and a webhook sends it once the task has ended.

The shapes keep the original spec's contract: `{status, result}` where `result.download_url` is
set on SUCCESS and `result` is a readable reason on FAILURE.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

TaskStatusName = Literal["PENDING", "PROGRESS", "SUCCESS", "FAILURE", "CANCELLED"]


class TaskProgress(BaseModel):
    """Live progress of a running job, from the execute activity's latest heartbeat."""

    percent: float
    node: str | None = None
    class_type: str | None = None
    step: int | None = None
    max: int | None = None
    worker: str | None = None
    updated_at: datetime | None = None


class TaskQueueInfo(BaseModel):
    """Why a PENDING job is not running yet, as far as Temporal and ComfyUI tell."""

    phase: Literal[
        "preparing", "waiting_for_gpu_worker", "submitting_to_comfyui", "queued_in_comfyui"
    ]
    position: int | None = Field(
        default=None, description="Position in ComfyUI's queue (0 = next), when known."
    )
    waiting_seconds: float | None = Field(
        default=None, description="Time since the GPU task was scheduled."
    )
    task_queue: str | None = Field(default=None, description="The GPU task queue it waits in.")
    backlog: int | None = Field(
        default=None,
        description="Jobs waiting in that queue, this one included (approximate; higher"
        " priority goes first).",
    )
    attempt: int | None = None
    last_failure: str | None = Field(
        default=None, description="Why the previous attempt failed, when this is a retry."
    )


class OutputPublic(BaseModel):
    filename: str
    url: str
    content_type: str
    size: int
    node_id: str


class NodeTimingPublic(BaseModel):
    """How long ComfyUI took over one node, from its own events."""

    node_id: str
    class_type: str | None = None
    seconds: float = Field(
        description="From ComfyUI announcing the node to the next node or the end, measured by "
        "the GPU worker as the messages arrive; 0 for a cached node."
    )
    cached: bool = Field(description="ComfyUI reused the node's output from its cache.")


class TaskTimings(BaseModel):
    """`result.timings`: where a SUCCESS task's time went, in seconds. A key is absent when it
    was not measured (tasks that ran before a measure existed)."""

    prepare_seconds: float | None = Field(default=None, description="Rendering the graph.")
    execute_seconds: float | None = Field(
        default=None, description="From scheduling the GPU step to its result, retries included."
    )
    total_seconds: float | None = Field(default=None, description="From submission to the end.")
    queue_wait_seconds: float | None = Field(
        default=None,
        description="From Temporal scheduling the attempt that succeeded to ComfyUI starting it"
        " on a GPU (waiting in a GPU queue, then in ComfyUI's own queue).",
    )
    execution_seconds: float | None = Field(
        default=None,
        description="ComfyUI's own execution time, from its execution_start and"
        " execution_success timestamps.",
    )
    comfy_execution_seconds: float | None = Field(
        default=None, description="The same as execution_seconds (its earlier name)."
    )
    nodes: list[NodeTimingPublic] = Field(
        default_factory=list,
        description="Each node of the graph: the cached ones first, then those ComfyUI ran, in "
        "the order it ran them.",
    )


class TaskResult(BaseModel):
    """`result` of a SUCCESS task."""

    download_url: str | None = Field(description="Absolute URL of the first output file.")
    outputs: list[OutputPublic]
    params: dict[str, Any] = Field(description="Resolved parameters, e.g. the seed actually used.")
    timings: TaskTimings
    worker: str
    attempts: int
    revision: str | None = None


class TaskError(BaseModel):
    """`error` of a FAILURE task: what failed, and where when known."""

    type: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    param: str | None = None


class TaskPublic(BaseModel):
    """Answer of GET /tasks/{id}."""

    task_id: str
    workflow_id: str | None = None
    status: TaskStatusName
    temporal_status: str = Field(description="Temporal's execution status, e.g. RUNNING.")
    created_at: datetime | None = None
    closed_at: datetime | None = None
    progress: TaskProgress | None = None
    queue: TaskQueueInfo | None = None
    result: TaskResult | str | None = Field(
        default=None,
        description="SUCCESS: outputs and download_url; FAILURE: a readable reason; CANCELLED: "
        '"cancelled" or "cancelled: <reason>".',
    )
    error: TaskError | None = None
    cancel_reason: str | None = Field(
        default=None,
        description="CANCELLED: the reason given with the cancel request, if one was given.",
    )
    webhook: WebhookPublic | None = Field(
        default=None, description="Delivery of the webhook, when the request set callback_url."
    )


class WebhookPublic(BaseModel):
    """How the task's webhook (callback_url) is being delivered."""

    url: str
    delivery_id: str = Field(description="X-Comfy-Delivery of the POST; the same on retries.")
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(description="POSTs made so far (retries included).")
    last_error: str | None = None
    status_code: int | None = Field(default=None, description="The receiver's last HTTP status.")
    delivered_at: datetime | None = None
