"""Request and response schemas of the HTTP API (what goes in, what comes out).

The shapes keep the original spec's contract: POST /generate answers `{task_id, ...}` and
GET /tasks/{id} answers `{status, result}` where `result.download_url` is set on SUCCESS and
`result` is a readable reason on FAILURE.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskStatusName = Literal["PENDING", "STARTED", "SUCCESS", "FAILURE", "CANCELLED"]


class GenerateOptions(BaseModel):
    """Options beside the workflow's parameters."""

    model_config = ConfigDict(extra="forbid")

    worker: str | None = Field(
        default=None, description="Pin the job to this GPU worker (its own task queue)."
    )
    priority: int | None = Field(
        default=None, ge=1, le=5, description="Temporal task priority: 1 (highest) to 5; default 3."
    )


class GenerateCreateOptions(GenerateOptions):
    """Options of one POST /generate request (a schedule's runs take only GenerateOptions)."""

    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Webhook: an http(s) URL that gets a signed POST of the task once it ends"
        " (success, failure or cancel); see docs/webhooks.md.",
    )


class GenerateCreate(BaseModel):
    """Body of POST /generate. `params` is checked against the workflow's manifest."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "workflow_id": "smoke_image",
                    "params": {"width": 64, "height": 64},
                }
            ]
        },
    )

    workflow_id: str = Field(min_length=1, description="A workflow listed by GET /workflows.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The workflow's parameters (see GET /workflows/{id})."
    )
    options: GenerateCreateOptions | None = None
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Same as options.callback_url (the original API's top-level field).",
    )


class GenerateAccepted(BaseModel):
    """Answer of POST /generate: the task id is the Temporal workflow id."""

    task_id: str
    status_url: str


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


class TaskResult(BaseModel):
    """`result` of a SUCCESS task."""

    download_url: str | None = Field(description="Absolute URL of the first output file.")
    outputs: list[OutputPublic]
    params: dict[str, Any] = Field(description="Resolved parameters, e.g. the seed actually used.")
    timings: dict[str, float]
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


class TaskSummary(BaseModel):
    task_id: str
    workflow_id: str | None
    status: TaskStatusName
    temporal_status: str
    created_at: datetime | None
    closed_at: datetime | None
    status_url: str


class TaskPage(BaseModel):
    """Answer of GET /tasks: newest first; pass `next_page_token` back as `page_token`."""

    tasks: list[TaskSummary]
    next_page_token: str | None = None


class CancelAnswer(BaseModel):
    """Answer of POST /tasks/{id}/cancel."""

    task_id: str
    cancel_requested: bool
    status: TaskStatusName
    message: str


class ManifestErrorPublic(BaseModel):
    file: str
    workflow: str | None
    key: str | None
    message: str
    text: str = Field(description="The whole error in one line.")


class WorkflowPublic(BaseModel):
    """A workflow as its manifest entry declares it, with every option that changes a run."""

    id: str
    description: str
    pool: str = Field(description="GPU pool whose workers run it (manifest `pool`).")
    timeout_seconds: float = Field(description="Time limit of one attempt (manifest `timeout`).")
    max_attempts: int = Field(description="Attempts in all: manifest `retries` + 1.")
    outputs: list[str] | None = Field(
        description="Node ids whose files are returned (manifest `outputs`); null = every node."
    )
    previews: bool = Field(description="Sampler previews are streamed (manifest `previews`).")
    stall_timeout: float | None = Field(
        description="Seconds ComfyUI may stay silent while running it before the attempt fails "
        "as ComfyUIStalled (manifest `stall_timeout`); null = no limit."
    )
    parameters: dict[str, dict[str, Any]] = Field(description="Parameter definitions, in order.")
    params_schema: dict[str, Any] = Field(description="JSON Schema of the `params` object.")


class WorkflowList(BaseModel):
    revision: str
    workflows: list[WorkflowPublic]
    errors: list[ManifestErrorPublic] = Field(
        description="Load errors; the workflows that loaded keep serving."
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class PoolReadiness(BaseModel):
    task_queue: str
    pollers: list[str]


class Readiness(BaseModel):
    """Answer of GET /ready (503 when `ready` is false)."""

    ready: bool
    temporal_reachable: bool
    temporal_error: str | None = None
    control_pollers: list[str] = Field(default_factory=list)
    pools: dict[str, PoolReadiness] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
