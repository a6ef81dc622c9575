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


class TaskModelDownload(BaseModel):
    """A model file the GPU worker downloads for the job before ComfyUI gets it (docs/models.md)."""

    param: str = Field(description="The parameter that gave the file by URL.")
    url: str
    bytes_done: int
    bytes_total: int | None = Field(default=None, description="None until the server says.")


class TaskQueueInfo(BaseModel):
    """Why a PENDING job is not running yet, as far as Temporal and ComfyUI tell."""

    phase: Literal[
        "preparing",
        "waiting_for_gpu_worker",
        "submitting_to_comfyui",
        "downloading_model",
        "queued_in_comfyui",
        "retrying",
    ] = Field(description='"retrying": the job failed and waits out a backoff before its next try.')
    download: TaskModelDownload | None = Field(
        default=None, description="While `phase` is downloading_model: which file, how far."
    )
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
    attempt: int | None = Field(
        default=None,
        description="Temporal's attempt of the GPU step now pending (1 + the infrastructure "
        "faults it was retried past in place).",
    )
    last_failure: str | None = Field(
        default=None, description="Why the previous attempt failed, when this is a retry."
    )


class InfrastructureFaultPublic(BaseModel):
    """The last fault of the infrastructure a job was retried past (a worker lost, ComfyUI down,
    an output store outage): the job goes on, without spending its `retries`."""

    type: str = Field(description="An error type of the infrastructure, e.g. WorkerLost.")
    message: str
    at: datetime | None = Field(
        default=None,
        description="When that attempt ended, when Temporal tells (a lost worker's attempt times "
        "out rather than ends: null).",
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
    attempts: int = Field(description="The job's own tries: 1 + its failures that were retried.")
    infrastructure_retries: int = Field(
        default=0, description="Retries after faults of the infrastructure; they spend no retries."
    )
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
    worker: str | None = Field(
        default=None,
        description="The GPU worker the job was routed to (or ran on, once it ended); null while "
        "it waits on the pool queue for whichever GPU is free first.",
    )
    routing: Literal["warm", "on_disk", "cold", "pinned"] | None = Field(
        default=None,
        description="How the job was routed (docs/routing.md): warm, to a worker holding its "
        "models loaded; on_disk, to a worker that has its model files; cold, to the pool queue "
        "(any GPU); pinned, to the worker the request named. Null for jobs routed before "
        "routing existed.",
    )
    routing_reason: str | None = Field(
        default=None, description='Why, e.g. "sd15.safetensors loaded on gpu-1".'
    )
    attempts: int | None = Field(
        default=None,
        description="The job's own tries so far (1 + its own failures retried, within the "
        "manifest's `retries`), once its GPU step was scheduled.",
    )
    infrastructure_retries: int | None = Field(
        default=None,
        description="Retries after faults of the infrastructure (a worker lost or shut down, "
        "ComfyUI down or stalled, an output store outage); retried until the manifest's "
        "`deadline`, never spending `retries`.",
    )
    last_infrastructure_fault: InfrastructureFaultPublic | None = Field(
        default=None, description="While PENDING or PROGRESS: the last such fault, if any."
    )
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
