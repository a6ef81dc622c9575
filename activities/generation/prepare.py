"""`prepare_generation` (control worker, local activity): render the manifest's graph with the
request's params. It reads the manifests as they are now, so its result (the exact graph and the
resolved params) is what history keeps. POST /generate renders the same `prepared_prompt` itself
and hands it to the workflow in its input; this step then serves schedules and other starts."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from temporalio import activity

from activities.generation.failures import reported
from activities.generation.image_uploads import image_input_refs
from activities.workers.logs import job_log_context
from manifests.errors import ParamsInvalid, UnknownWorkflow
from manifests.render import RenderedPrompt, render_prompt
from temporal_workflows.failures import ErrorType, activity_failure, generation_error
from temporal_workflows.names import PREPARE_ACTIVITY
from temporal_workflows.payloads import ModelInputRef, PreparedPrompt, PrepareInput

if TYPE_CHECKING:
    from manifests.definitions import WorkflowManifest
    from manifests.registry import ManifestRegistry

logger = logging.getLogger(__name__)


class PrepareActivities:
    """`prepare_generation`, bound to the registry the control worker loaded."""

    def __init__(self, registry: ManifestRegistry) -> None:
        self._registry = registry

    @activity.defn(name=PREPARE_ACTIVITY)
    async def prepare_generation(self, request: PrepareInput) -> PreparedPrompt:
        with (
            job_log_context(
                request.task_id, workflow=request.workflow_id, attempt=activity.info().attempt
            ),
            reported(request.task_id, logger),
        ):
            # Reading manifests touches the disk; keep the worker's event loop free.
            return await asyncio.to_thread(self._prepare, request)

    def _prepare(self, request: PrepareInput) -> PreparedPrompt:
        snapshot = self._registry.snapshot()
        manifest = snapshot.workflows.get(request.workflow_id)
        try:
            if manifest is None:
                raise UnknownWorkflow(request.workflow_id, list(snapshot.workflows))
            rendered = render_prompt(manifest, request.params, revision=snapshot.revision)
        except UnknownWorkflow as err:
            raise activity_failure(
                generation_error(ErrorType.UNKNOWN_WORKFLOW, param="workflow_id", reason=str(err))
            ) from None
        except ParamsInvalid as err:
            first = err.errors[0] if err.errors else None
            error = generation_error(
                ErrorType.INVALID_PARAMS, param=first.param if first else None, reason=str(err)
            )
            # Every problem is listed in a second detail, for clients that show one entry per field.
            raise activity_failure(
                error, [{"param": e.param, "reason": e.reason} for e in err.errors]
            ) from None
        return prepared_prompt(manifest, rendered)


def prepared_prompt(manifest: WorkflowManifest, rendered: RenderedPrompt) -> PreparedPrompt:
    """The rendered graph with what the GPU step needs from its manifest."""
    return PreparedPrompt(
        workflow_id=rendered.workflow_id,
        prompt=rendered.prompt,
        params=rendered.params,
        revision=rendered.revision,
        pool=manifest.pool,
        timeout_seconds=manifest.timeout_seconds,
        max_attempts=manifest.max_attempts,
        deadline_seconds=manifest.deadline_seconds,
        output_nodes=manifest.outputs,
        param_bindings=manifest.param_bindings(),
        previews=manifest.previews,
        stall_timeout=manifest.stall_timeout,
        image_inputs=image_input_refs(rendered),
        model_inputs=[
            ModelInputRef(
                param=m.param,
                folder=m.folder,
                url=m.source.url,
                sha256=m.source.sha256,
                name=m.source.file_name(),
                targets=m.targets,
            )
            for m in rendered.model_inputs
        ],
    )
