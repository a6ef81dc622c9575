"""What ComfyUI 0.8.0 sends us, as TypedDicts: the HTTP answers we read (comfyui-protocol.md §2)
and the WebSocket messages we follow (§3.2, §3.3). Shapes checked against the recorded traces.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

# ---------------------------------------------------------------------------- what we send
# An API-format graph {node id: node} (§2.1); the manifests render it, so its inputs stay open.
Graph = dict[str, Any]


# ---------------------------------------------------------------------------- outputs (§2.5)
class FileItem(TypedDict):
    """One file a node wrote: fetch it with GET /view (§2.6)."""

    filename: str
    subfolder: str
    type: str  # "output" | "temp" | "input" (§4.5)


# A node's UI output: {"images": [FileItem...], "audio": [...], "animated": [true], "text": [...]}.
# Each key holds a list; only some keys hold FileItems, so items are checked where read.
UIOutput = dict[str, list[Any]]


# ---------------------------------------------------------------------------- POST /prompt (§2.1)
class InputError(TypedDict):
    """One entry of node_errors[id].errors."""

    type: str  # "required_input_missing", "value_not_in_list", ...
    message: str
    details: str
    extra_info: dict[str, Any]  # input_name, received_value, input_config, ... per type


class NodeErrors(TypedDict):
    errors: list[InputError]
    dependent_outputs: list[str]
    class_type: str


class PromptAccepted(TypedDict):
    """200 answer. node_errors can be non-empty: invalid outputs were dropped, the rest queued."""

    prompt_id: str
    number: float
    node_errors: dict[str, NodeErrors]


class PromptErrorDetail(TypedDict):
    type: str  # "no_prompt", "invalid_prompt", "prompt_no_outputs", ...
    message: str
    details: str
    extra_info: dict[str, Any]


class PromptRejected(TypedDict):
    """400 answer: nothing was queued."""

    error: PromptErrorDetail
    node_errors: dict[str, NodeErrors]


# ---------------------------------------------------------------------------- GET /queue (§2.3)
# [number, prompt_id, prompt, extra_data, outputs_to_execute]: a JSON array, read by position.
QueueItem = list[Any]


class QueueState(TypedDict):
    queue_running: list[QueueItem]
    queue_pending: list[QueueItem]  # the raw heap: not in execution order


# ---------------------------------------------------------------------------- WebSocket (§3.2)
class ExecInfo(TypedDict):
    queue_remaining: int


class QueueStatus(TypedDict):
    exec_info: ExecInfo


class StatusData(TypedDict):
    status: QueueStatus
    sid: NotRequired[str]  # in the greeting only (§3.1)


class ExecutionStartData(TypedDict):
    prompt_id: str
    timestamp: int  # ms since epoch


class ExecutionCachedData(TypedDict):
    nodes: list[str]  # every node of the prompt with a cache hit
    prompt_id: str
    timestamp: int


class ExecutingData(TypedDict):
    node: str | None  # None: the prompt is done, its history entry written (§4.9)
    display_node: NotRequired[str]
    # Absent when replayed to a socket that reconnects while its prompt runs (§3.1).
    prompt_id: NotRequired[str]


class ProgressData(TypedDict):
    value: float
    max: float
    prompt_id: str
    node: str | None


class ExecutedData(TypedDict):
    node: str
    display_node: str
    output: UIOutput | None
    prompt_id: str


class ExecutionSuccessData(TypedDict):
    prompt_id: str
    timestamp: int


class ExecutionErrorData(TypedDict, total=False):
    prompt_id: str
    node_id: str
    node_type: str
    executed: list[str]
    exception_message: str
    exception_type: str  # "torch.OutOfMemoryError", "ExecutionBlocked", ... (§4.3)
    traceback: list[str]
    current_inputs: dict[str, list[Any]]
    current_outputs: list[str]
    timestamp: int  # absent for ExecutionBlocked


class ExecutionInterruptedData(TypedDict):
    prompt_id: str
    node_id: str
    node_type: str
    executed: list[str]
    timestamp: int


class StatusMessage(TypedDict):
    type: Literal["status"]
    data: StatusData


class ExecutionStartMessage(TypedDict):
    type: Literal["execution_start"]
    data: ExecutionStartData


class ExecutionCachedMessage(TypedDict):
    type: Literal["execution_cached"]
    data: ExecutionCachedData


class ExecutingMessage(TypedDict):
    type: Literal["executing"]
    data: ExecutingData


class ProgressMessage(TypedDict):
    type: Literal["progress"]
    data: ProgressData


class ExecutedMessage(TypedDict):
    type: Literal["executed"]
    data: ExecutedData


class ExecutionSuccessMessage(TypedDict):
    type: Literal["execution_success"]
    data: ExecutionSuccessData


class ExecutionErrorMessage(TypedDict):
    type: Literal["execution_error"]
    data: ExecutionErrorData


class ExecutionInterruptedMessage(TypedDict):
    type: Literal["execution_interrupted"]
    data: ExecutionInterruptedData


# The text frames we act on. Others (progress_state, feature_flags, logs, custom nodes' own
# types) arrive too and are skipped by their `type`.
WsMessage = (
    StatusMessage
    | ExecutionStartMessage
    | ExecutionCachedMessage
    | ExecutingMessage
    | ProgressMessage
    | ExecutedMessage
    | ExecutionSuccessMessage
    | ExecutionErrorMessage
    | ExecutionInterruptedMessage
)


class PreviewMetadata(TypedDict):
    """The JSON header of a type-4 binary preview frame (§3.3)."""

    node_id: str
    prompt_id: str
    display_node_id: str
    parent_node_id: str | None
    real_node_id: str
    image_type: str  # "image/jpeg" | "image/png"


# ---------------------------------------------------------------------------- GET /history (§2.5)
# [event name, that event's WebSocket data]: execution_start, execution_cached, then
# execution_success / execution_error / execution_interrupted. A JSON array, read by position.
HistoryMessage = tuple[str, dict[str, Any]]


class HistoryStatus(TypedDict):
    status_str: Literal["success", "error"]  # interrupted prompts read "error"
    completed: bool
    messages: list[HistoryMessage]


class NodeMeta(TypedDict):
    node_id: str
    display_node: str
    parent_node: str | None
    real_node_id: str


class HistoryEntry(TypedDict):
    prompt: QueueItem
    outputs: dict[str, UIOutput]  # only nodes that produced UI output
    status: HistoryStatus
    meta: dict[str, NodeMeta]


# ---------------------------------------------------------------------------- other endpoints
class Uploaded(TypedDict):
    """POST /upload/image answer (§2.7): `name` may differ from the name sent."""

    name: str
    subfolder: str
    type: str


class NodeInputs(TypedDict, total=False):
    required: dict[str, list[Any]]  # name: [TYPE or [options] or "COMBO", {default, min, ...}]
    optional: dict[str, list[Any]]
    hidden: dict[str, Any]


def combo_options(spec: list[Any]) -> list[Any] | None:
    """The choices of a COMBO input's spec in /object_info, None for any other input: a V1 node
    lists them first (`[[...], {...}]`), a V3 node writes `["COMBO", {"options": [...]}]` (§2.8).
    """
    if not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return options if isinstance(options, list) else None
    return None


class NodeInfo(TypedDict, total=False):
    """One node class in GET /object_info (§2.8); V3-schema nodes add a few keys."""

    input: NodeInputs
    input_order: dict[str, list[str]]
    output: list[str]
    output_is_list: list[bool]
    output_name: list[str]
    name: str
    display_name: str
    description: str
    python_module: str
    category: str
    output_node: bool


class SystemInfo(TypedDict, total=False):
    os: str
    ram_total: int  # bytes
    ram_free: int
    comfyui_version: str
    required_frontend_version: str
    installed_templates_version: str
    required_templates_version: str
    python_version: str
    pytorch_version: str
    embedded_python: bool
    argv: list[str]


class Device(TypedDict):
    name: str  # "cpu", or "cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync"
    type: str
    index: int | None
    vram_total: int
    vram_free: int
    torch_vram_total: int
    torch_vram_free: int


class SystemStats(TypedDict):
    """GET /system_stats (§2.8): always exactly one device, the torch device in use."""

    system: SystemInfo
    devices: list[Device]


class Job(TypedDict, total=False):
    """GET /api/jobs/{id} (§2.10). Keys whose value is None are left out."""

    id: str
    status: Literal["pending", "in_progress", "completed", "failed"]  # interrupted: failed
    priority: float
    create_time: int
    outputs_count: int
    workflow_id: str
    execution_start_time: int
    execution_end_time: int
    execution_error: ExecutionErrorData  # absent for interrupted prompts
    preview_output: dict[str, Any]
    outputs: dict[str, UIOutput]
    execution_status: HistoryStatus
    workflow: dict[str, Any]  # {"prompt", "extra_data"}
