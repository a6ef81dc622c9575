"""Workflows the manifests declare: parameters, JSON Schema of `params`, and load errors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import ManifestsDep
from api.errors import WorkflowNotFound
from api.inventory import choices_from_gpus, pool_inventory
from api.schemas import ManifestErrorPublic, WorkflowList, WorkflowPublic
from manifests.definitions import WorkflowManifest
from manifests.errors import ManifestError

router = APIRouter(prefix="/workflows", tags=["workflows"])


def workflow_public(
    manifest: WorkflowManifest, gpu_choices: dict[str, list[str]] | None = None
) -> WorkflowPublic:
    """The workflow; `gpu_choices` adds `choices_from_gpus` to the parameters it names."""
    parameters = {name: _definition(p) for name, p in manifest.parameters.items()}
    for name, choices in (gpu_choices or {}).items():
        parameters[name]["choices_from_gpus"] = choices
    return WorkflowPublic(
        id=manifest.id,
        description=manifest.description,
        pool=manifest.pool,
        timeout_seconds=manifest.timeout_seconds,
        max_attempts=manifest.max_attempts,
        outputs=manifest.outputs,
        previews=manifest.previews,
        stall_timeout=manifest.stall_timeout,
        parameters=parameters,
        params_schema=manifest.json_schema(),
        experimental=manifest.experimental,
    )


def _definition(parameter: Any) -> dict[str, Any]:
    dump = getattr(parameter, "model_dump", None)
    if dump is not None:
        result: dict[str, Any] = dump(mode="json", exclude_none=True)
        return result
    return dict(vars(parameter))


def error_public(error: ManifestError) -> ManifestErrorPublic:
    return ManifestErrorPublic(
        file=error.file,
        workflow=error.workflow,
        key=error.key,
        message=error.message,
        text=str(error),
    )


@router.get("", response_model=WorkflowList, summary="Every workflow, and manifest load errors")
async def list_workflows(manifests: ManifestsDep) -> WorkflowList:
    snapshot = await manifests.snapshot()
    return WorkflowList(
        revision=snapshot.revision,
        workflows=[workflow_public(m) for m in snapshot.workflows.values()],
        errors=[error_public(e) for e in snapshot.errors],
    )


@router.get(
    "/{workflow_id}",
    response_model=WorkflowPublic,
    responses={404: {"description": "No workflow with this id."}},
    summary="One workflow's parameters and JSON Schema",
)
async def get_workflow(
    workflow_id: str, manifests: ManifestsDep, request: Request
) -> WorkflowPublic:
    snapshot = await manifests.snapshot()
    manifest = snapshot.workflows.get(workflow_id)
    if manifest is None:
        raise WorkflowNotFound(workflow_id, list(snapshot.workflows))
    inventory = await pool_inventory(request, manifest.pool)
    return workflow_public(manifest, choices_from_gpus(manifest, inventory))
