"""Settings of the HTTP API: where Temporal, the manifests and the output store are.

One object, built by the CLI from its flags (each has an environment variable). Temporal's own
connection settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key) are read by
`temporalio.envconfig` when the client connects; `temporal_address` here only overrides them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_dir: Path = Field(
        default=Path("data"), description="Holds outputs/<task_id>/ (and temporal.db for `dev`)."
    )
    output_store: str | None = Field(
        default=None,
        description="Where outputs, image inputs and previews live: None = <data-dir>, a path or"
        " file:// URL = that directory, s3://bucket/prefix = an S3-compatible bucket.",
    )
    download_mode: Literal["presigned", "proxy"] = Field(
        default="presigned",
        description="Object store only: download URLs are the store's presigned URLs (clients"
        " fetch from the store), or `proxy`: the API streams files from the store itself.",
    )
    manifests_dir: Path | None = Field(
        default=None, description="Directory of base.yaml and workflows.yaml; None = the default."
    )
    workflows_dir: Path | None = Field(
        default=None, description="Directory of the ComfyUI API-format graphs; None = the default."
    )
    temporal_address: str | None = Field(
        default=None, description="host:port of the Temporal frontend; None = envconfig/defaults."
    )
    temporal_namespace: str | None = None
    public_url: str | None = Field(
        default=None,
        description="Base URL clients reach the API at, for download links; None = per request.",
    )
    embedded_control_worker: bool = Field(
        default=False, description="Run the control worker (GenerationWorkflow) inside the API."
    )
    ready_pools: tuple[str, ...] | None = Field(
        default=None,
        description="GPU pools /ready checks for pollers; None = every pool the manifests use.",
    )

    api_keys: tuple[str, ...] = Field(
        default=(),
        description="Keys accepted as `Authorization: Bearer` or `X-API-Key`; empty = no auth.",
    )
    url_signing_key: str | None = Field(
        default=None,
        description="HMAC secret of download URLs; None = <data-dir>/url-signing.key (created).",
    )
    download_url_ttl_seconds: int = Field(
        default=24 * 3600, ge=1, description="How long a signed download URL stays valid."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )

    allow_private_callback_urls: bool = Field(
        default_factory=lambda: _env_flag("COMFY_ALLOW_PRIVATE_CALLBACK_URLS"),
        description="Accept callback_url hosts on private, loopback or link-local addresses"
        " (env COMFY_ALLOW_PRIVATE_CALLBACK_URLS=1; the control worker reads the same variable).",
    )
    allow_private_image_urls: bool = Field(
        default_factory=lambda: _env_flag("COMFY_ALLOW_PRIVATE_IMAGE_URLS"),
        description="Accept image input URLs on private, loopback or link-local addresses"
        " (env COMFY_ALLOW_PRIVATE_IMAGE_URLS=1; GPU workers read the same variable).",
    )
    max_image_bytes: int = Field(
        default_factory=lambda: int(os.environ.get("COMFY_MAX_IMAGE_BYTES") or 10 * 1024 * 1024),
        ge=1,
        description="Largest decoded base64 image input (env COMFY_MAX_IMAGE_BYTES; GPU workers"
        " apply the same variable to downloads).",
    )

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
