"""Payloads exchanged by the API, GenerationWorkflow and its activities.

Every workflow and activity takes one model, so fields can be added without breaking running
histories. All clients and workers use `pydantic_data_converter`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class GenerationOptions(_Payload):
    """Per-request options beside the workflow's own parameters."""

    worker: str | None = Field(
        default=None, description="Run on this GPU worker only (its own task queue)."
    )
    priority: int | None = Field(
        default=None, ge=1, le=5, description="Temporal task priority, 1 (highest) to 5."
    )
    callback_url: str | None = Field(
        default=None,
        description="Webhook: POSTed once the generation ends (success, failure or cancel).",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL clients reach the API at, for the links in the webhook's body.",
    )


class GenerationRequest(_Payload):
    """Input of GenerationWorkflow: what the client asked for, and the graph when the API
    already rendered it."""

    workflow_id: str
    params: dict[str, Any] = Field(default_factory=dict)
    options: GenerationOptions = Field(default_factory=GenerationOptions)
    prepared: PreparedPrompt | None = Field(
        default=None,
        description=(
            "The graph the API rendered at submit (POST /generate); the workflow then runs it "
            "without its own `prepare_generation` step. None: the workflow renders it when it "
            "runs (schedules, starts without the API)."
        ),
    )
    routed: bool | None = Field(
        default=None,
        description="Whether the workflow routes its GPU step by model (docs/routing.md), set by "
        "code that starts it knowing routing; None (older starts): decided by a patch marker.",
    )
    routing: RoutingDecision | None = Field(
        default=None,
        description="Where the API sent the job's first try, decided at submit (its memo has it "
        "from the start); None: the workflow's routing step decides (docs/routing.md).",
    )


class PrepareInput(_Payload):
    """Input of the `prepare_generation` local activity."""

    task_id: str
    workflow_id: str
    params: dict[str, Any]


class PreparedPrompt(_Payload):
    """Output of `prepare_generation`: the exact graph sent to ComfyUI, kept in history."""

    workflow_id: str
    prompt: dict[str, Any]
    params: dict[str, Any] = Field(description="Resolved parameters, e.g. the seed actually used.")
    revision: str = Field(description="Manifest revision the graph was rendered from.")
    # The manifest's values, copied by prepare_generation (its defaults live in manifests/).
    pool: str
    timeout_seconds: float
    max_attempts: int
    deadline_seconds: float | None = Field(
        default=None,
        description="The manifest's `deadline`: infrastructure faults are retried until then; "
        "None (a prompt prepared before deadlines existed): without a time limit.",
    )
    output_nodes: list[str] | None = None
    param_bindings: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Maps "<node id>.<input name>" to the parameter that set it, to name it in errors.'
        ),
    )
    previews: bool = Field(default=False, description="The manifest turns on sampler previews.")
    image_inputs: list[ImageInputRef] = Field(
        default_factory=list, description="Images from the request, uploaded by the GPU worker."
    )
    stall_timeout: float | None = Field(
        default=None, description="The manifest's limit on ComfyUI's silence while it runs."
    )
    model_inputs: list[ModelInputRef] = Field(
        default_factory=list, description="Model files by URL, downloaded by the GPU worker."
    )


class ModelInputRef(_Payload):
    """A model file the request gives by URL, for the GPU worker to have in its ComfyUI's model
    folder before it submits the graph, which already names it (`name`)."""

    param: str
    folder: str = Field(description="ComfyUI's model folder: checkpoints, loras, vae, ...")
    url: str = Field(description="http(s); an hf:// reference arrives resolved.")
    sha256: str | None = None
    name: str = Field(description="File name in the folder, as the graph's loader inputs hold it.")
    targets: list[str] = Field(description='Graph inputs ("<node id>.<input>") naming it.')


class ImageInputRef(_Payload):
    """An image the request brings, for the GPU worker to upload to its ComfyUI before it
    submits the graph. Exactly one source is set; bytes travel by reference, never inline
    (a stored input, or a URL), except for workflows started without the API."""

    param: str
    targets: list[str] = Field(description='Graph inputs ("<node id>.<input>") to set.')
    url: str | None = None
    input_file: str | None = Field(
        default=None, description="Name in the shared store's inputs folder (base64 requests)."
    )
    base64: str | None = None
    filename: str | None = None


class ExecuteInput(_Payload):
    """Input of the `execute_prompt` activity on a GPU queue."""

    task_id: str
    workflow_id: str
    prompt: dict[str, Any]
    output_nodes: list[str] | None = None
    param_bindings: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(
        default=None,
        description="Limit on ComfyUI's own run time, counted from when it starts the prompt.",
    )
    previews: bool = Field(
        default=False, description="Keep the latest sampler preview in the output store."
    )
    image_inputs: list[ImageInputRef] = Field(
        default_factory=list,
        description="Images to upload to ComfyUI before submitting; `prompt` holds placeholders.",
    )
    stall_timeout: float | None = Field(
        default=None,
        description=(
            "Seconds of silence from ComfyUI, while it runs the prompt, after which the attempt "
            "is interrupted and retried; None: the GPU worker's own setting."
        ),
    )
    try_number: int = Field(
        default=1,
        description=(
            "Which execute activity of the generation this is: the workflow schedules a new one "
            "for each retry it decides itself; Temporal's attempts count within one. Both make "
            "the ComfyUI prompt id."
        ),
    )
    model_inputs: list[ModelInputRef] = Field(
        default_factory=list,
        description="Model files to have in ComfyUI's model folders before submitting.",
    )


class AdmissionCheck(_Payload):
    """Input of the `check_admission` local activity: may a schedule's run queue its job?"""

    task_id: str
    pool: str


class AdmissionOutcome(_Payload):
    """Result of `check_admission`; the memo of a run skipped because its pool was full."""

    admitted: bool
    pool: str
    backlog: int | None = Field(default=None, description="Jobs waiting in the pool (approx.).")
    max_backlog: int | None = Field(default=None, description="The pool's limit; None: none.")

    def skip_reason(self) -> str:
        return (
            f"skipped: pool '{self.pool}' is full ({self.backlog} jobs waiting, at most "
            f"{self.max_backlog})"
        )


class CancelRequest(_Payload):
    """Input of the `request_cancel` local activity, started by the `cancel` signal."""

    task_id: str
    run_id: str
    reason: str


class PriorityChange(_Payload):
    """Input of the `update_priority` local activity, started by the `set_priority` signal."""

    task_id: str
    run_id: str
    activity_id: str
    priority: int = Field(ge=1, le=5)


Routing = Literal["warm", "on_disk", "cold", "pinned"]


class RoutingDecision(_Payload):
    """Where a job's execute activity goes, and why (model-affinity routing, docs/routing.md)."""

    routing: Routing = Field(
        description="warm: to a worker holding the job's models loaded; on_disk: to one of the "
        "workers that have its model files; cold: the pool queue, whichever GPU is free first; "
        "pinned: the worker the request named."
    )
    task_queue: str
    worker: str | None = Field(default=None, description="The worker it was sent to, if one.")
    reason: str = ""
    wait_seconds: float | None = Field(
        default=None,
        description="warm / on_disk: how long the job may wait for that worker before it goes "
        "to the pool queue (a GPU never idles longer than this while jobs wait).",
    )


class RouteInput(_Payload):
    """Input of the `route_generation` local activity: the job's pool and graph, whose loader
    inputs name its models, and the decision it waited on when that worker did not take it."""

    task_id: str
    pool: str
    prompt: dict[str, Any]
    waited: RoutingDecision | None = None


class ModelDownloadProgress(_Payload):
    """A model file the GPU worker is downloading for the job."""

    param: str
    url: str
    bytes_done: int = 0
    bytes_total: int | None = Field(default=None, description="None until the server says.")


class Progress(_Payload):
    """Heartbeat details of `execute_prompt`: the live progress the API shows."""

    phase: Literal["downloading_model", "queued", "running", "storing"] = "queued"
    download: ModelDownloadProgress | None = None
    worker: str | None = None
    comfy_prompt_id: str | None = None
    queue_position: int | None = None
    percent: float = 0.0
    node: str | None = None
    class_type: str | None = None
    step: int | None = None
    max: int | None = None
    updated_at: datetime | None = None
    handed_back: int = Field(
        default=0,
        description="Attempts of this activity that a GPU worker handed back because its GPU "
        "was full (GpuFull); they are no retries of the job.",
    )


class OutputRef(_Payload):
    """One output file in the output store, among the task's committed outputs."""

    filename: str
    content_type: str
    size: int
    node_id: str
    sha256: str | None = None
    store_key: str | None = Field(
        default=None,
        description="Key of the file under the object store's prefix (the committed attempt's);"
        " None in a local store.",
    )


class NodeTiming(_Payload):
    """How long ComfyUI took over one node of the graph, from its WebSocket events."""

    node_id: str
    class_type: str | None = None
    seconds: float = Field(
        description="From its `executing` message to the next node's, or to the prompt's end; "
        "0 for a cached node."
    )
    cached: bool = Field(default=False, description="ComfyUI reused its output from its cache.")


class ExecuteResult(_Payload):
    """Output of `execute_prompt`."""

    outputs: list[OutputRef]
    worker: str
    comfy_prompt_id: str
    cached: bool = False
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    comfy_execution_seconds: float | None = Field(
        default=None, description="ComfyUI's own execution time (execution_start to success)."
    )
    attempt: int = Field(
        default=1,
        description="Which Temporal attempt of this execute activity produced this (1 + the "
        "infrastructure faults it was retried past).",
    )
    queue_wait_seconds: float | None = Field(
        default=None,
        description="From Temporal scheduling this attempt to ComfyUI starting the prompt.",
    )
    node_timings: list[NodeTiming] = Field(
        default_factory=list, description="Each node ComfyUI ran or took from its cache, in order."
    )


class GenerationResult(_Payload):
    """Result of a successful GenerationWorkflow."""

    task_id: str
    workflow_id: str
    outputs: list[OutputRef]
    params: dict[str, Any]
    revision: str
    worker: str
    attempts: int = Field(description="The job's own tries: 1 + its failures that were retried.")
    infrastructure_retries: int = Field(
        default=0, description="Retries after faults of the infrastructure (never `retries`)."
    )
    timings: dict[str, float] = Field(default_factory=dict)
    node_timings: list[NodeTiming] = Field(
        default_factory=list, description="Per-node times of the attempt that succeeded."
    )
    webhook: WebhookDelivery | None = Field(
        default=None, description="How the webhook (options.callback_url) was delivered."
    )
    routing: RoutingDecision | None = Field(
        default=None, description="How the execute activity that succeeded was routed."
    )


class GenerationError(_Payload):
    """Why a generation failed, in words a user understands. Carried as ApplicationError details."""

    type: str
    message: str
    node_id: str | None = None
    class_type: str | None = None
    param: str | None = None
    input_name: str | None = Field(
        default=None, description="The node input ComfyUI complained about, when it named one."
    )
    retryable: bool = False
    attempt: int | None = Field(default=None, description="The attempt that failed, when known.")
    infrastructure_retries: int | None = Field(
        default=None,
        description="A generation's final error: its retries after infrastructure faults.",
    )


class InfrastructureFault(_Payload):
    """A fault of the infrastructure that a job was retried past, and when it happened."""

    type: str
    message: str
    at: datetime | None = None


class RetryCounts(_Payload):
    """A generation's two retry counts up to its execute activity now scheduled (whose own
    retries are that activity's Temporal attempts); in the memo from its second activity on."""

    attempts: int = Field(default=1, description="The job's own try under way (1, 2, ...).")
    infrastructure_retries: int = Field(
        default=0, description="Infrastructure retries of its earlier execute activities."
    )
    last_infrastructure_fault: InfrastructureFault | None = None


Phase = Literal["queued", "rendering", "running", "storing", "notifying", "done"]


class GenerationStatus(_Payload):
    """Answer of GenerationWorkflow's `status` query."""

    phase: Phase = "queued"
    workflow_id: str
    attempt: int = Field(default=0, description="The job's own try (1 + its failures retried).")
    infrastructure_retries: int = Field(
        default=0,
        description="Infrastructure retries so far, except those of the execute activity now "
        "pending (its Temporal attempt - 1, in `temporal workflow describe`).",
    )
    last_infrastructure_fault: InfrastructureFault | None = None
    worker: str | None = None
    params: dict[str, Any] | None = None
    progress: Progress | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    task_queue: str | None = Field(default=None, description="GPU task queue the job was sent to.")
    routing: RoutingDecision | None = Field(
        default=None, description="The routing of the execute activity now scheduled, or last."
    )
    priority: int | None = Field(default=None, description="Temporal task priority, 1 to 5.")
    cancel_reason: str | None = None
    error: GenerationError | None = None
    outcome: Literal["SUCCESS", "FAILURE", "CANCELLED"] | None = Field(
        default=None,
        description="How the generation ended, set before the webhook step (phase 'notifying').",
    )
    result: GenerationResult | None = Field(
        default=None, description="The result of a successful generation, once it is known."
    )
    webhook: WebhookDelivery | None = None


# ---------------------------------------------------------------------------------------------
# Webhooks (the `notify` activity on the control queue)

WebhookState = Literal["pending", "delivered", "failed"]


class WebhookDelivery(_Payload):
    """State of a generation's webhook, shown by GET /tasks/{id} as `webhook`."""

    url: str
    delivery_id: str = Field(description="Sent as X-Comfy-Delivery; the same on every retry.")
    status: WebhookState = "pending"
    attempts: int = 0
    last_error: str | None = None
    status_code: int | None = Field(default=None, description="The receiver's last HTTP status.")
    delivered_at: datetime | None = None


class NotifyInput(_Payload):
    """Input of the `notify` activity: where to POST, and the outcome the body describes."""

    task_id: str
    workflow_id: str
    url: str
    delivery_id: str
    status: Literal["SUCCESS", "FAILURE", "CANCELLED"]
    result: GenerationResult | None = None
    error: GenerationError | None = None
    cancel_reason: str | None = None
    public_url: str | None = None


class NotifyResult(_Payload):
    """Output of `notify`: the receiver accepted the delivery."""

    status_code: int
    attempt: int
    delivered_at: datetime
