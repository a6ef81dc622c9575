"""Typed manifest models: parameter definitions (base.yaml), workflow entries (workflows.yaml)
and the merged, resolved `WorkflowManifest` that validation and rendering work from.

Every model forbids unknown keys, so a typo such as `deafult:` is a load error, not a silent no-op.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from manifests.model_inputs import LOADER_INPUTS

ParamType = Literal["string", "integer", "float", "boolean", "image", "file"]
# Types whose value is an input file for ComfyUI's input directory (a name, a URL or base64):
# `image` is ours, `file` the original format's (an image, mask, video or audio file).
INPUT_FILE_TYPES = ("image", "file")

# ComfyUI's seed inputs (KSampler.seed, ImageAddNoise.seed, ...) take 0..0xffffffffffffffff.
SEED_MIN = 0
SEED_MAX = 2**64 - 1
RANDOM_TOKEN = "random"

# What a workflows.yaml entry gets for the keys it leaves out (README, "Workflow manifests").
DEFAULT_TIMEOUT_SECONDS = 600.0
# Also the pool a GPU worker serves when it is given none, so both meet without configuration.
DEFAULT_POOL = "default"
# `retries` counts the job's own failures only; faults of the fleet (a worker lost, ComfyUI down,
# a store outage) are retried for as long as the job's `deadline` allows.
DEFAULT_RETRIES = 2
DEFAULT_MAX_ATTEMPTS = DEFAULT_RETRIES + 1
DEFAULT_DEADLINE_SECONDS = 24 * 3600.0


class _Strict(BaseModel):
    # strict: YAML gives real types, so "yes" must not become True and "3" must not become 3.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _number(value: Any) -> Any:
    # One clear error instead of pydantic's one-per-union-member ("min.int", "min.float").
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _output_indexes(value: Any) -> Any:
    # JSON-style YAML writes `{"0": model}`; output indexes are ints either way.
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    return value


def _node_ref(value: Any) -> Any:
    # Node ids are strings in the API format, but YAML reads `node: 3` as an int.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class Target(_Strict):
    """One graph input a parameter writes to: a node (id or `_meta.title`) and an input name."""

    node: str
    input: str

    _coerce_node = field_validator("node", mode="before")(_node_ref)


class RandomIntArgs(_Strict):
    min: int = SEED_MIN
    max: int = SEED_MAX


class SpecialHandler(_Strict):
    """The original spec's special handler: when the value equals `value`, run `action`."""

    value: Any
    action: Literal["generate_random_int"]
    args: RandomIntArgs = Field(default_factory=RandomIntArgs)


class Bypass(_Strict):
    """Remove `node` from the graph when the parameter's value is one of `when`.

    Consumers of the removed node's output number N are reconnected to whatever feeds the removed
    node's input named `outputs[N]`. For example LoraLoader outputs MODEL (0) and CLIP (1), which
    pass through its `model` and `clip` inputs: `outputs: {0: model, 1: clip}`.
    """

    node: str
    when: list[Any] = Field(min_length=1)
    outputs: dict[int, str] = Field(min_length=1)

    _coerce_node = field_validator("node", mode="before")(_node_ref)
    _coerce_outputs = field_validator("outputs", mode="before")(_output_indexes)


class ParameterDef(_Strict):
    """One request parameter: its type, constraints, default and where it goes in the graph."""

    type: ParamType
    description: str = ""
    default: Any = None
    required: bool = False
    choices: list[Any] | None = Field(default=None, min_length=1)
    min: int | float | None = None
    max: int | float | None = None
    max_length: int | None = Field(default=None, ge=0)
    pattern: str | None = None
    random: bool = False
    map_to: str | None = None
    targets: list[Target] = Field(default_factory=list)
    special_handlers: list[SpecialHandler] = Field(default_factory=list)
    bypass: Bypass | None = None

    _check_bounds = field_validator("min", "max", mode="before")(_number)

    @model_validator(mode="before")
    @classmethod
    def _target_shorthand(cls, data: Any) -> Any:
        # `targets: {node: 3, input: seed}` (one mapping) is read as a list of one.
        if isinstance(data, dict) and isinstance(data.get("targets"), dict):
            data = {**data, "targets": [data["targets"]]}
        return data

    @property
    def takes_file(self) -> bool:
        """The value is an input file (a name in ComfyUI's input directory, a URL or base64)."""
        return self.type in INPUT_FILE_TYPES

    def random_token(self) -> Any:
        """The request value that asks for a random integer, or None when there is none."""
        if self.random:
            return RANDOM_TOKEN
        for handler in self.special_handlers:
            if handler.action == "generate_random_int":
                return handler.value
        return None

    def random_range(self) -> tuple[int, int]:
        """Inclusive range a random value is drawn from."""
        for handler in self.special_handlers:
            if handler.action == "generate_random_int":
                return handler.args.min, handler.args.max
        low = int(self.min) if self.min is not None else SEED_MIN
        high = int(self.max) if self.max is not None else SEED_MAX
        return low, high


class WorkflowEntry(_Strict):
    """One entry of workflows.yaml, before it is merged with base.yaml and resolved on its graph."""

    workflow_file: str
    description: str = ""
    parameters: list[str] = Field(default_factory=list)
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    timeout: int | float | None = Field(default=None, gt=0)
    pool: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    outputs: list[str] | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    # Seconds from submission after which the job fails as DeadlineExceeded, however often the
    # infrastructure failed under it; None: DEFAULT_DEADLINE_SECONDS.
    deadline: int | float | None = Field(default=None, gt=0)
    # Sampler previews: the GPU worker keeps the latest one for GET /tasks/{id}/preview.
    previews: bool = False
    # Seconds without any message from ComfyUI while the prompt runs before the GPU worker
    # interrupts it and retries the attempt (a hung node); None: the worker's default.
    stall_timeout: int | float | None = Field(default=None, gt=0)

    _check_timeout = field_validator("timeout", "stall_timeout", "deadline", mode="before")(_number)

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_node_ref(v) for v in value]
        return value


class LoraEntry(_Strict):
    """One LoRA file of loras.yaml: what it does, and the trigger words a request that selects it
    gets around its prompt (`prefix` before, `suffix` after, joined with ", ")."""

    name: str = Field(min_length=1)
    description: str | None = None
    prefix: str | None = None
    suffix: str | None = None
    examples: list[str] = Field(default_factory=list)


class LoraPrompt(_Strict):
    """Which parameters of a workflow select a LoRA and which one is the prompt they modify."""

    prompt_param: str
    lora_params: list[str]
    catalogue: dict[str, LoraEntry]


class InputRef(_Strict):
    """A resolved binding: node id and input name in the workflow's graph."""

    node_id: str
    input: str

    def key(self) -> str:
        return f"{self.node_id}.{self.input}"


class ResolvedBypass(_Strict):
    node_id: str
    when: list[Any]
    outputs: dict[int, str]


def _json_type_of(defn: ParameterDef) -> dict[str, Any]:
    return {
        "string": {"type": "string"},
        "image": {"type": "string"},
        "file": {"type": "string"},
        "integer": {"type": "integer"},
        "float": {"type": "number"},
        "boolean": {"type": "boolean"},
    }[defn.type]


def parameter_json_schema(defn: ParameterDef) -> dict[str, Any]:
    """JSON Schema of one parameter's value."""
    base = _json_type_of(defn)
    if defn.choices is not None:
        base["enum"] = list(defn.choices)
    if defn.type in ("integer", "float"):
        if defn.min is not None:
            base["minimum"] = defn.min
        if defn.max is not None:
            base["maximum"] = defn.max
    if defn.type == "string" or defn.takes_file:
        if defn.max_length is not None:
            base["maxLength"] = defn.max_length
        if defn.pattern is not None:
            # JSON Schema patterns match anywhere; the validator matches the whole value.
            base["pattern"] = f"^(?:{defn.pattern})$"
    if defn.takes_file:
        # Besides a file name in ComfyUI's input directory, a file the request brings
        # (manifests/image_inputs.py).
        filename = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"}
        base = {
            "anyOf": [
                base,
                {
                    "type": "object",
                    "properties": {
                        "url": {"type": "string", "format": "uri"},
                        "filename": filename,
                    },
                    "required": ["url"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"base64": {"type": "string"}, "filename": filename},
                    "required": ["base64"],
                    "additionalProperties": False,
                },
            ]
        }
    schema: dict[str, Any]
    token = defn.random_token()
    if token is not None:
        schema = {"anyOf": [base, {"const": token}]}
    else:
        schema = base
    if defn.description:
        schema["description"] = defn.description
    if defn.default is not None:
        schema["default"] = defn.default
    return schema


def _with_model_reference(schema: dict[str, Any]) -> dict[str, Any]:
    """A model parameter's schema: its file name, or a file the GPU worker downloads."""
    outer: dict[str, Any] = {k: schema.pop(k) for k in ("description", "default") if k in schema}
    reference = {
        "anyOf": [
            schema,
            {"type": "string", "pattern": "^hf://", "description": "hf://org/repo[@rev]/path"},
            {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "filename": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"},
                },
                "required": ["url"],
                "additionalProperties": False,
            },
        ]
    }
    return {**reference, **outer}


class WorkflowManifest(BaseModel):
    """One workflow, with base.yaml definitions and its overrides merged and bound to its graph."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    description: str = ""
    workflow_file: str
    parameters: dict[str, ParameterDef] = Field(default_factory=dict)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    pool: str = DEFAULT_POOL
    outputs: list[str] | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    previews: bool = False
    stall_timeout: float | None = None
    template: dict[str, Any]
    # Resolved at load: parameter name -> graph inputs it sets, and -> the node it may remove.
    bindings: dict[str, list[InputRef]] = Field(default_factory=dict)
    bypasses: dict[str, ResolvedBypass] = Field(default_factory=dict)
    # Registry revision this version of the workflow was loaded at.
    revision: str = ""
    # A workflows/exp_*.json graph run without a workflows.yaml entry (every base parameter).
    experimental: bool = False
    # Set when the prompt takes the trigger words of the LoRA a request selects (loras.yaml).
    lora_prompt: LoraPrompt | None = None

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the `params` object a request sends for this workflow."""
        properties = {name: parameter_json_schema(d) for name, d in self.parameters.items()}
        for name in self.model_folders():
            properties[name] = _with_model_reference(properties[name])
        required = [name for name, d in self.parameters.items() if d.required]
        schema: dict[str, Any] = {
            "type": "object",
            "title": f"{self.id} parameters",
            "properties": properties,
            "additionalProperties": False,
        }
        if self.description:
            schema["description"] = self.description
        if required:
            schema["required"] = required
        return schema

    def model_folders(self) -> dict[str, str]:
        """The `string` parameters bound only to model loader inputs of one model folder, with
        that folder (manifests/model_inputs.py): they also take a URL or an hf:// reference."""
        folders: dict[str, str] = {}
        for name, refs in self.bindings.items():
            if not refs or self.parameters[name].type != "string":
                continue
            found = {
                LOADER_INPUTS.get((self.template[ref.node_id].get("class_type", ""), ref.input))
                for ref in refs
            }
            if len(found) == 1 and None not in found:
                folders[name] = str(found.pop())
        return folders

    def param_bindings(self) -> dict[str, str]:
        """Maps "<node id>.<input name>" to the parameter that sets it (to name it in errors)."""
        return {ref.key(): name for name, refs in self.bindings.items() for ref in refs}
