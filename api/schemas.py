"""Request and response schemas of the HTTP API (what goes in, what comes out).

The shapes keep the original spec's contract: POST /generate answers `{task_id, ...}`. The task
itself (GET /tasks/{id}, also sent by webhooks) is in `api.contract.task_schemas`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.contract.task_schemas import TaskStatusName

# Temporal refuses ids and task queue names over 1000 bytes (dynamic config limit.maxIDLength):
# a task id is "<workflow id>-<time>-<hex>" and a pinned job's queue "comfy-gpu-<pool>.<worker>",
# so both names stay well below it. Manifest workflow ids are ASCII (manifests.loading.entries).
MAX_WORKFLOW_ID_LENGTH = 255
MAX_WORKER_NAME_LENGTH = 200
# A worker name is part of a task queue name: no spaces, no control characters.
WORKER_NAME_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"


class GenerateOptions(BaseModel):
    """Options beside the workflow's parameters."""

    model_config = ConfigDict(extra="forbid")

    worker: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_WORKER_NAME_LENGTH,
        pattern=WORKER_NAME_PATTERN,
        description="Pin the job to this GPU worker (its own task queue).",
    )
    # Strict, like the workflow's parameters: "1", 1.0 and true are not priorities.
    priority: int | None = Field(
        default=None,
        ge=1,
        le=5,
        strict=True,
        # JSON Schema counts 4.0 as an integer, so only the description can say it is refused.
        description="Temporal task priority: 1 (highest) to 5; default 3. A JSON integer"
        ' written without a fraction: 4.0, "4" and true are refused.',
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

    workflow_id: str = Field(
        min_length=1,
        max_length=MAX_WORKFLOW_ID_LENGTH,
        description="A workflow listed by GET /workflows.",
    )
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
    max_attempts: int = Field(
        description="Attempts in all after the job's own failures: manifest `retries` + 1."
    )
    deadline_seconds: float = Field(
        description="Seconds from submission within which faults of the infrastructure are "
        "retried without spending `retries` (manifest `deadline`)."
    )
    outputs: list[str] | None = Field(
        description="Node ids whose files are returned (manifest `outputs`); null = every node."
    )
    previews: bool = Field(description="Sampler previews are streamed (manifest `previews`).")
    stall_timeout: float | None = Field(
        description="Seconds ComfyUI may stay silent while running it before the attempt fails "
        "as ComfyUIStalled (manifest `stall_timeout`); null = no limit."
    )
    parameters: dict[str, dict[str, Any]] = Field(
        description="Parameter definitions, in order. A parameter bound to a model loader input "
        "(ckpt_name, lora_name, ...) has `choices_from_gpus`: the names the GPU workers of the "
        "pool report (only on GET /workflows/{id}, and only once a worker has reported)."
    )
    params_schema: dict[str, Any] = Field(description="JSON Schema of the `params` object.")
    experimental: bool = Field(
        default=False,
        description="A workflows/exp_*.json graph served without a manifest entry, taking every "
        "base.yaml parameter (off with COMFY_EXPERIMENTAL_WORKFLOWS=0).",
    )


class LoraPublic(BaseModel):
    """A LoRA of loras.yaml (GET /loras), in the original service's shape."""

    name: str = Field(description="The LoRA's file name, as a request's `lora` names it.")
    description: str | None = None
    prefix: str | None = Field(
        default=None, description="Trigger words put before the prompt when it is selected."
    )
    suffix: str | None = Field(
        default=None, description="Trigger words put after the prompt when it is selected."
    )
    examples: list[str] = Field(default_factory=list)


class WorkflowList(BaseModel):
    revision: str
    workflows: list[WorkflowPublic]
    errors: list[ManifestErrorPublic] = Field(
        description="Load errors; the workflows that loaded keep serving."
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Pong(BaseModel):
    """The original service's liveness answer, which its client scripts check."""

    message: Literal["pong"] = "pong"


class PoolReadiness(BaseModel):
    task_queue: str
    pollers: list[str]


class ApiReadiness(BaseModel):
    """Answer of GET /ready/api (503 when `ready` is false): this API can accept jobs."""

    ready: bool
    temporal_reachable: bool
    temporal_error: str | None = None
    reasons: list[str] = Field(default_factory=list)


class Readiness(ApiReadiness):
    """Answer of GET /ready (503 when `ready` is false): jobs accepted now would also run."""

    control_pollers: list[str] = Field(default_factory=list)
    pools: dict[str, PoolReadiness] = Field(default_factory=dict)
