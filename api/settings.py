"""Settings of the HTTP API: where Temporal, the manifests and the output store are.

One object, built by the CLI from its flags (each has an environment variable). Temporal's own
connection settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key) are read by
`temporalio.envconfig` when the client connects; `temporal_address` here only overrides them.
"""

from __future__ import annotations

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
