"""Settings of the HTTP API: where Temporal, the manifests and the output store are.

One object, read from the environment by `Settings.from_env()` and overridden by CLI flags.
Temporal's own connection settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key) are read by
`temporalio.envconfig` when the client connects; `temporal_address` here only overrides them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_dir: Path = Field(
        default=Path("data"), description="Holds outputs/<task_id>/ (and temporal.db for `dev`)."
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

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from COMFY_* and *_DIR variables, then explicit overrides (None skipped)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if env.get("COMFY_DATA_DIR"):
            values["data_dir"] = Path(env["COMFY_DATA_DIR"])
        if env.get("MANIFESTS_DIR"):
            values["manifests_dir"] = Path(env["MANIFESTS_DIR"])
        if env.get("WORKFLOWS_DIR"):
            values["workflows_dir"] = Path(env["WORKFLOWS_DIR"])
        if env.get("COMFY_PUBLIC_URL"):
            values["public_url"] = env["COMFY_PUBLIC_URL"]
        if env.get("COMFY_READY_POOLS"):
            values["ready_pools"] = tuple(
                p.strip() for p in env["COMFY_READY_POOLS"].split(",") if p.strip()
            )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
