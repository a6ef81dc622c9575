"""Settings of the HTTP API process (`Settings`) and of `comfy-temporal dev` (`DevSettings`), read
from the environment once, with the command's flags over them (activities/workers/settings.py).

Temporal's connection settings besides address and namespace (TLS, API key, profile) are read by
`temporalio.envconfig` when the client connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from activities.workers.settings import (
    AdmissionSettings,
    ComfyUISettings,
    DownloadUrlSettings,
    ImageInputSettings,
    LogSettings,
    OutputStoreSettings,
    RoutingSettings,
    TemporalSettings,
    TracingSettings,
    WebhookSettings,
)
from api.api_keys import parse_api_keys


class Settings(
    DownloadUrlSettings,
    OutputStoreSettings,
    TemporalSettings,
    WebhookSettings,
    ImageInputSettings,
    AdmissionSettings,
    RoutingSettings,
    LogSettings,
    TracingSettings,
):
    """`comfy-temporal api`; tests build it with keywords (the environment fills the rest)."""

    host: str = Field(default="127.0.0.1", alias="COMFY_API_HOST", description="Bind address.")
    port: int = Field(default=8000, ge=0, le=65535, alias="COMFY_API_PORT", description="Port.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", alias="COMFY_LOG_LEVEL", description="Log level."
    )
    public_url: str | None = Field(
        default=None,
        alias="COMFY_PUBLIC_URL",
        description="Base URL clients reach the API at, for download links; None = per request.",
    )
    embedded_control_worker: bool = Field(
        default=False,
        alias="COMFY_EMBEDDED_CONTROL_WORKER",
        description="Run the control worker (GenerationWorkflow) inside the API.",
    )
    ready_pools: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        default=None,
        alias="COMFY_READY_POOLS",
        description="GPU pools /ready checks for pollers (comma-separated); None = every pool"
        " the manifests use.",
    )

    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        alias="COMFY_API_KEYS",
        description="Keys accepted as `Authorization: Bearer` or `X-API-Key` (comma-separated);"
        " empty = no auth.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        alias="COMFY_API_KEYS_FILE",
        description="More API keys, one per line; the CLI adds them to `api_keys`.",
    )
    insecure_no_auth: bool = Field(
        default=False,
        alias="COMFY_INSECURE_NO_AUTH",
        description="Serve without API keys on a non-loopback host (a proxy does access control).",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        alias="COMFY_MAX_BODY_BYTES",
        description="Largest request body accepted (413 above).",
    )

    max_batch_items: int = Field(
        default=1000,
        ge=1,
        alias="COMFY_MAX_BATCH_ITEMS",
        description="Most items one POST /batches may hold (a list, or a sweep's combinations).",
    )

    @field_validator("api_keys", "ready_pools", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return parse_api_keys(value) if isinstance(value, str) else value

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"


class DevSettings(Settings, ComfyUISettings):
    """`comfy-temporal dev`: the API's settings, its GPU worker's ComfyUI, and the dev server."""

    temporal_port: int = Field(
        default=7233, alias="COMFY_TEMPORAL_PORT", description="Temporal frontend port."
    )
    ui_port: int = Field(
        default=8233, alias="COMFY_TEMPORAL_UI_PORT", description="Temporal Web UI port."
    )
    headless: bool = Field(
        default=False, alias="COMFY_TEMPORAL_HEADLESS", description="No Temporal Web UI."
    )
    shutdown_grace: float = Field(
        default=20.0,
        gt=0,
        alias="COMFY_SHUTDOWN_GRACE",
        description="Seconds each process gets to stop before it is killed.",
    )
