"""What each worker process reads from the environment, in one pydantic-settings class per process,
and the flags that override it: every command reads its environment once, at start, here.

Each field's alias is its environment variable; an empty value counts as unset. The API's class
(api/settings.py) and `dev`'s build on the groups below, so a variable means the same everywhere.
Temporal's TLS, API key and profile variables are read by `temporalio.envconfig`
(temporal_client.py).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from activities.workers.logs import LogFormat
from manifests.definitions import DEFAULT_POOL

DEFAULT_DOWNLOAD_URL_TTL = 24 * 3600
DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MODEL_CACHE_GB = 100.0
DEFAULT_MAX_MODEL_GB = 50.0
# A job waits this long for the GPU worker that holds its models before any GPU takes it: well
# under a model load (seconds to a minute), so waiting pays only when that worker is nearly free.
DEFAULT_AFFINITY_WAIT_SECONDS = 5.0


class ProcessSettings(BaseSettings):
    """Base of every settings class: frozen, fields settable by name, unknown variables ignored."""

    model_config = SettingsConfigDict(
        frozen=True,
        validate_by_name=True,
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
    )


class SharedSettings(ProcessSettings):
    """Where the data and the manifests are: the same for the API and both workers."""

    data_dir: Path = Field(
        default=Path("data"),
        alias="DATA_DIR",
        description="Holds outputs/<task_id>/ (and temporal.db and logs for `dev`).",
    )
    manifests_dir: Path | None = Field(
        default=None,
        alias="MANIFESTS_DIR",
        description="Directory of base.yaml and workflows.yaml; None = the bundled manifests/.",
    )
    workflows_dir: Path | None = Field(
        default=None,
        alias="WORKFLOWS_DIR",
        description="Directory of the ComfyUI API-format graphs; None = the bundled workflows/.",
    )
    experimental_workflows: bool = Field(
        default=True,
        alias="COMFY_EXPERIMENTAL_WORKFLOWS",
        description="Serve workflows/exp_*.json graphs that have no workflows.yaml entry.",
    )


class OutputStoreSettings(ProcessSettings):
    """Where outputs, image inputs and previews live, and how clients download them
    (docs/storage.md): the API, both workers and `dev` must name the same store."""

    output_store: str | None = Field(
        default=None,
        alias="COMFY_OUTPUT_STORE",
        description="None = <data-dir>; a path or file:// URL = that directory;"
        " s3://bucket/prefix = an S3-compatible bucket (endpoint and credentials from the"
        " standard AWS variables and files).",
    )
    download_mode: Literal["presigned", "proxy"] = Field(
        default="presigned",
        alias="COMFY_DOWNLOAD_MODE",
        description="Object store only: download URLs are the store's presigned URLs (clients"
        " fetch from the store), or proxy: the API streams files from the store itself.",
    )


class TemporalSettings(ProcessSettings):
    """Where Temporal is. The same variables `temporalio.envconfig` reads; the rest of the
    connection (TLS, API key, profile file) is left to it."""

    temporal_address: str | None = Field(
        default=None,
        alias="TEMPORAL_ADDRESS",
        description="host:port of the Temporal frontend; None = the profile, else localhost:7233.",
    )
    temporal_namespace: str | None = Field(
        default=None,
        alias="TEMPORAL_NAMESPACE",
        description="Temporal namespace; None = the profile, else 'default'.",
    )


class LogSettings(ProcessSettings):
    """How every process writes its log (activities/workers/logs.py)."""

    log_format: LogFormat = Field(
        default="text",
        alias="COMFY_LOG_FORMAT",
        description="text, or json: one object per line with the job's task id, workflow, worker"
        " and attempt where known.",
    )


class DownloadUrlSettings(SharedSettings):
    """Signed download URLs: the API signs them in results, the control worker in webhooks; both
    must use the same key (or the same data dir, which holds it) and lifetime, so the API accepts
    what the worker signed."""

    download_url_ttl_seconds: int = Field(
        default=DEFAULT_DOWNLOAD_URL_TTL,
        ge=1,
        alias="COMFY_DOWNLOAD_URL_TTL",
        description="How long a signed download URL stays valid, in seconds.",
    )
    url_signing_key: str | None = Field(
        default=None,
        alias="COMFY_URL_SIGNING_KEY",
        description="HMAC secret of download URLs; None = <data-dir>/url-signing.key (created).",
    )


class WebhookSettings(ProcessSettings):
    """The `notify` activity's secret and outbound-address policy (API checks the same policy
    when a callback_url is submitted)."""

    webhook_secret: str | None = Field(
        default=None,
        alias="COMFY_WEBHOOK_SECRET",
        description="HMAC secret of X-Comfy-Signature; None = webhooks go out unsigned.",
    )
    allow_private_callback_urls: bool = Field(
        default=False,
        alias="COMFY_ALLOW_PRIVATE_CALLBACK_URLS",
        description="Accept callback_url hosts on private, loopback or link-local addresses.",
    )


class ImageInputSettings(ProcessSettings):
    """Image inputs: the API checks them at submit time, the GPU worker again when it fetches."""

    allow_private_image_urls: bool = Field(
        default=False,
        alias="COMFY_ALLOW_PRIVATE_IMAGE_URLS",
        description="Accept image input URLs on private, loopback or link-local addresses.",
    )
    max_image_bytes: int = Field(
        default=DEFAULT_MAX_IMAGE_BYTES,
        ge=1,
        alias="COMFY_MAX_IMAGE_BYTES",
        description="Largest image input: decoded base64 at the API, downloads on GPU workers.",
    )


class ModelSettings(ProcessSettings):
    """Model files by URL on a GPU worker (docs/models.md): where they go, how much disk they may
    take, and the credentials downloads send. Whether private addresses are allowed is the image
    inputs' switch (COMFY_ALLOW_PRIVATE_IMAGE_URLS): one outbound policy for request URLs."""

    models_dir: Path | None = Field(
        default=None,
        alias="COMFY_MODELS_DIR",
        description=(
            "Downloaded models go to <dir>/<folder>/; None = <data-dir>/models/<worker name> for "
            "a ComfyUI the worker launches (given to it as an extra model path); an attached "
            "ComfyUI needs one it reads."
        ),
    )
    model_cache_gb: float = Field(
        default=DEFAULT_MODEL_CACHE_GB,
        gt=0,
        alias="COMFY_MODEL_CACHE_GB",
        description="Disk the downloaded models may take; least recently used ones go first.",
    )
    max_model_gb: float = Field(
        default=DEFAULT_MAX_MODEL_GB,
        gt=0,
        alias="COMFY_MAX_MODEL_GB",
        description="Largest model file a request may have downloaded.",
    )
    hf_token: str | None = Field(
        default=None,
        alias="HF_TOKEN",
        description="Bearer token for huggingface.co downloads (gated or private repositories).",
    )
    model_tokens: str | None = Field(
        default=None,
        alias="COMFY_MODEL_TOKENS",
        description="Bearer tokens per host for model downloads: host=token,host2=token2.",
    )

    @property
    def model_cache_bytes(self) -> int:
        return int(self.model_cache_gb * 1e9)

    @property
    def max_model_bytes(self) -> int:
        return int(self.max_model_gb * 1e9)


class RoutingSettings(ProcessSettings):
    """How the control worker routes jobs to GPU workers (docs/routing.md)."""

    routing: Literal["affinity", "pool"] = Field(
        default="affinity",
        alias="COMFY_ROUTING",
        description="affinity: prefer a GPU worker holding the job's models loaded, then one "
        "with its files on disk; pool: the pool queue, whichever GPU is free first.",
    )
    affinity_wait_seconds: float = Field(
        default=DEFAULT_AFFINITY_WAIT_SECONDS,
        gt=0,
        alias="COMFY_AFFINITY_WAIT",
        description="How long a job waits for the preferred GPU worker before any GPU takes it.",
    )


class MetricsSettings(ProcessSettings):
    """A worker's Prometheus endpoint (the API serves GET /metrics on its own port instead)."""

    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        alias="COMFY_METRICS_PORT",
        description="Serve Prometheus metrics on this port; None = no metrics endpoint.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        alias="COMFY_METRICS_HOST",
        description="Address of the metrics endpoint; 0.0.0.0 lets another host scrape it.",
    )


class AdmissionSettings(ProcessSettings):
    """Admission control (activities/generation/admission.py): the API refuses submits past a
    pool's maximum backlog, the control worker skips a schedule's runs; give both the same."""

    max_backlog: int | None = Field(
        default=None,
        ge=1,
        alias="COMFY_MAX_BACKLOG",
        description="Most jobs a pool's GPU queue may hold; more get 429 (schedules: the run is"
        " skipped). None = no limit.",
    )
    max_backlog_pools: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=dict,
        alias="COMFY_MAX_BACKLOG_POOLS",
        description="Per pool limits over COMFY_MAX_BACKLOG, as POOL=N, comma-separated.",
    )
    backlog_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        alias="COMFY_BACKLOG_CACHE_SECONDS",
        description="How long a reading of a pool's backlog from Temporal is reused.",
    )

    @field_validator("max_backlog_pools", mode="before")
    @classmethod
    def _pool_limits(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple):
            return value
        limits: dict[str, Any] = {}
        for item in value:
            pool, sep, limit = str(item).partition("=")
            if not sep or not pool.strip():
                raise ValueError(f"{item!r} is not POOL=N")
            limits[pool.strip()] = limit.strip()
        return limits

    @field_validator("max_backlog_pools", mode="after")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for pool, limit in value.items():
            if limit < 1:
                raise ValueError(f"the limit of pool {pool!r} must be at least 1")
        return value


class TracingSettings(ProcessSettings):
    """OpenTelemetry traces (activities/workers/tracing.py): off unless an endpoint is given.
    The variables are OpenTelemetry's own; the exporter reads the rest of its standard ones
    (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _CERTIFICATE, ...) itself."""

    otlp_endpoint: str | None = Field(
        default=None,
        alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="Base URL of an OTLP/HTTP receiver (spans go to <url>/v1/traces); None = no"
        " traces.",
    )
    otel_service_name: str = Field(
        default="comfy-temporal",
        alias="OTEL_SERVICE_NAME",
        description="service.name of the spans this process exports.",
    )


class ControlWorkerSettings(
    RoutingSettings,
    DownloadUrlSettings,
    OutputStoreSettings,
    TemporalSettings,
    WebhookSettings,
    AdmissionSettings,
    LogSettings,
    MetricsSettings,
    TracingSettings,
):
    """`comfy-temporal control-worker`."""


class ComfyUISettings(ProcessSettings):
    """Which ComfyUI a GPU worker runs and what it calls itself: `gpu-worker` and `dev` alike."""

    comfyui_path: Path | None = Field(
        default=None, alias="COMFYUI_PATH", description="ComfyUI install directory to launch."
    )
    comfyui_url: str | None = Field(
        default=None, alias="COMFYUI_URL", description="A running ComfyUI to attach to instead."
    )
    comfyui_python: str | None = Field(
        default=None,
        alias="COMFYUI_PYTHON",
        description="ComfyUI's own interpreter; None = its venv, else python3 on PATH.",
    )
    comfyui_args: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        alias="COMFYUI_ARGS",
        description="Extra ComfyUI arguments (the variable is split like a shell would).",
    )
    gpu: int | None = Field(default=None, alias="GPU", description="CUDA device of its ComfyUI.")
    worker_name: str | None = Field(
        default=None,
        alias="COMFY_WORKER_NAME",
        description="Worker name, unique in the pool; None = <host>-gpu<N>.",
    )
    pool: str = Field(
        default=DEFAULT_POOL, alias="COMFY_POOL", description="Pool whose queue the worker polls."
    )

    @field_validator("comfyui_args", mode="before")
    @classmethod
    def _shell_split(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @property
    def configured(self) -> bool:
        """Whether a ComfyUI is named at all (to launch or to attach to)."""
        return self.comfyui_path is not None or self.comfyui_url is not None


class GpuWorkerProcessSettings(
    SharedSettings,
    OutputStoreSettings,
    TemporalSettings,
    ImageInputSettings,
    ModelSettings,
    ComfyUISettings,
    LogSettings,
    MetricsSettings,
    TracingSettings,
):
    """`comfy-temporal gpu-worker` (GpuWorkerSettings in gpu.py is what its loop is given)."""

    shutdown_grace: float = Field(
        default=300.0,
        gt=0,
        alias="COMFY_SHUTDOWN_GRACE",
        description="On SIGTERM, how long running jobs may take to finish, in seconds.",
    )
    prefetch: bool = Field(
        default=True,
        alias="COMFY_PREFETCH",
        description=(
            "Queue more jobs in ComfyUI while busy: one, up to three when jobs are short (off:"
            " take a job only when idle)."
        ),
    )
    # ComfyUI recycling (activities/workers/recycling.py): every limit is off unless set.
    recycle_rss_mb: float | None = Field(
        default=None,
        gt=0,
        alias="COMFY_RECYCLE_RSS_MB",
        description="Restart ComfyUI between jobs once its process tree's resident memory passes"
        " this many MiB (a ComfyUI the worker launched, not one it attaches to).",
    )
    recycle_vram_mb: float | None = Field(
        default=None,
        gt=0,
        alias="COMFY_RECYCLE_VRAM_MB",
        description="Restart ComfyUI between jobs once the VRAM it holds while idle passes this"
        " many MiB (its /system_stats).",
    )
    recycle_after_jobs: int | None = Field(
        default=None,
        ge=1,
        alias="COMFY_RECYCLE_AFTER_JOBS",
        description="Restart ComfyUI after this many jobs.",
    )


S = TypeVar("S", bound=ProcessSettings)

# The first spelling of each settings flag, for error messages: field name -> "--flag".
_FLAG_OF: dict[str, str] = {}


def env_name(settings: type[ProcessSettings], field: str) -> str:
    alias = settings.model_fields[field].alias
    assert alias is not None, f"{settings.__name__}.{field} has no environment variable"
    return alias


def env_help(settings: type[ProcessSettings], field: str, text: str) -> str:
    """A flag's help: `text`, then the variable and the default, both taken from the field."""
    info = settings.model_fields[field]
    default = info.default
    shown = ""
    if isinstance(default, bool):
        shown = f"; default {'on' if default else 'off'}"
    elif default not in (None, ()):
        shown = f"; default {default}"
    return f"{text} (env {env_name(settings, field)}{shown})"


def add_setting_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    settings: type[ProcessSettings],
    field: str,
    *option_strings: str,
    help: str,
    **kwargs: Any,
) -> None:
    """A flag that overrides `settings.field`: not given, it stays None and the environment (or
    the field's default) applies when the settings are built."""
    _FLAG_OF.setdefault(field, option_strings[0])
    kwargs.setdefault("default", None)
    parser.add_argument(*option_strings, dest=field, help=env_help(settings, field, help), **kwargs)


def settings_from_args(settings: type[S], args: argparse.Namespace, **fixed: Any) -> S:
    """The process's settings: flags given, over the environment, over the defaults. A value
    that does not fit ends the command with one line per problem (exit 2, like a usage error)."""
    given = {
        name: value
        for name in settings.model_fields
        if (value := getattr(args, name, None)) is not None
    }
    given.update(fixed)
    try:
        return settings(**given)
    except ValidationError as err:
        for problem in err.errors():
            where = _where(settings, problem["loc"])
            print(f"error: {where} = {problem.get('input')!r}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def _where(settings: type[ProcessSettings], loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    for field, info in settings.model_fields.items():
        if name in (field, info.alias):
            flag = _FLAG_OF.get(field)
            return f"{flag} / env {info.alias}" if flag else f"env {info.alias}"
    return name
