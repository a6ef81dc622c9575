"""GenerationWorkflow's activities: render the graph (control worker), run it in ComfyUI (GPU
worker).

`prepare_generation` runs as a local activity: it reads the manifests as they are now, so its result
(the exact graph and resolved params) is what history keeps. `execute_prompt` is where a generation
meets ComfyUI: it submits the graph, heartbeats progress, reacts to cancellation by deleting or
interrupting the prompt, and stores the outputs. ComfyUI's errors become typed ApplicationErrors
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio import activity
from temporalio.api.activity.v1 import ActivityOptions
from temporalio.api.common.v1 import Priority as ProtoPriority
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import UpdateActivityOptionsRequest
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.comfyui.errors import (
    ComfyUIExecutionError,
    ComfyUIInterrupted,
    ComfyUIOutOfMemory,
    ComfyUIStalled,
    ComfyUIUnavailable,
    ComfyUIValidationError,
)
from activities.comfyui.events import (
    NodeExecuting,
    NodeProgress,
    PreviewFrame,
    PromptQueued,
    PromptStarted,
)
from activities.generation.image_uploads import image_input_refs, upload_image_inputs
from activities.io.output_store import OutputPathRefused, OutputStore, OutputStoreError
from manifests.errors import ParamsInvalid, UnknownWorkflow
from manifests.render import render_prompt
from temporal_workflows.generation import (
    EXECUTE_ACTIVITY,
    PREPARE_ACTIVITY,
    REQUEST_CANCEL_ACTIVITY,
    UPDATE_PRIORITY_ACTIVITY,
)
from temporal_workflows.payloads import (
    CancelRequest,
    ExecuteInput,
    ExecuteResult,
    GenerationError,
    OutputRef,
    PreparedPrompt,
    PrepareInput,
    PriorityChange,
    Progress,
)

if TYPE_CHECKING:
    from activities.comfyui.client import ComfyUIClient
    from activities.comfyui.events import ComfyEvent
    from activities.comfyui.outputs import PromptResult
    from manifests.registry import ManifestRegistry

logger = logging.getLogger(__name__)

# Namespace for prompt ids: the same task and attempt always get the same ComfyUI prompt id, so the
# prompt can be found in ComfyUI's queue and history from the task id alone.
_PROMPT_ID_NAMESPACE = uuid.UUID("5f0c6a52-3f7e-4f7c-9d0e-2b1c8a7e4d10")


# Per-prompt override of ComfyUI's --preview-method (default none): "auto" gives cheap latent2rgb
# JPEG previews from samplers (comfyui-protocol.md §1.4, §3.3).
_PREVIEWS_EXTRA_DATA = {"preview_method": "auto"}

# How long a prompt interrupted for stalling may take to stop before ComfyUI is restarted.
STALL_INTERRUPT_GRACE = 5.0


def prompt_id_for(task_id: str, run_id: str, attempt: int) -> str:
    return str(uuid.uuid5(_PROMPT_ID_NAMESPACE, f"{task_id}/{run_id}/{attempt}"))


def _failure(error: GenerationError, *, non_retryable: bool) -> ApplicationError:
    error.retryable = not non_retryable
    return ApplicationError(error.message, error, type=error.type, non_retryable=non_retryable)


# ---------------------------------------------------------------------------------------------
# prepare_generation (control worker, local activity)


class PrepareActivities:
    """`prepare_generation`, bound to the registry the control worker loaded."""

    def __init__(self, registry: ManifestRegistry) -> None:
        self._registry = registry

    @activity.defn(name=PREPARE_ACTIVITY)
    async def prepare_generation(self, request: PrepareInput) -> PreparedPrompt:
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
            raise _failure(
                GenerationError(type="UnknownWorkflow", message=str(err), param="workflow_id"),
                non_retryable=True,
            ) from None
        except ParamsInvalid as err:
            first = err.errors[0] if err.errors else None
            error = GenerationError(
                type="InvalidParams", message=str(err), param=first.param if first else None
            )
            # Every problem is listed in a second detail, for clients that show one entry per field.
            raise ApplicationError(
                error.message,
                error,
                [{"param": e.param, "reason": e.reason} for e in err.errors],
                type=error.type,
                non_retryable=True,
            ) from None
        return PreparedPrompt(
            workflow_id=rendered.workflow_id,
            prompt=rendered.prompt,
            params=rendered.params,
            revision=rendered.revision,
            pool=manifest.pool,
            timeout_seconds=manifest.timeout_seconds,
            max_attempts=manifest.max_attempts,
            output_nodes=manifest.outputs,
            param_bindings=manifest.param_bindings(),
            previews=manifest.previews,
            stall_timeout=manifest.stall_timeout,
            image_inputs=image_input_refs(rendered),
        )


# ---------------------------------------------------------------------------------------------
# request_cancel (control worker, local activity started by the `cancel` signal)


@activity.defn(name=REQUEST_CANCEL_ACTIVITY)
async def request_cancel(request: CancelRequest) -> None:
    """Ask Temporal to cancel a generation run, with a reason; a run that already closed is fine."""
    handle = activity.client().get_workflow_handle(request.task_id, run_id=request.run_id)
    try:
        await handle.cancel(reason=request.reason)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return
        raise


# ---------------------------------------------------------------------------------------------
# update_priority (control worker, local activity started by the `set_priority` signal)


@activity.defn(name=UPDATE_PRIORITY_ACTIVITY)
async def update_priority(change: PriorityChange) -> None:
    """Change the task priority of a generation's scheduled execute activity. Temporal re-queues
    a task that no worker has taken yet at the new priority; a finished activity is fine."""
    client = activity.client()
    request = UpdateActivityOptionsRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=change.task_id, run_id=change.run_id),
        id=change.activity_id,
        activity_options=ActivityOptions(priority=ProtoPriority(priority_key=change.priority)),
        update_mask=FieldMask(paths=["priority"]),
        identity=client.identity,
    )
    try:
        await client.workflow_service.update_activity_options(request)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return
        raise


# ---------------------------------------------------------------------------------------------
# execute_prompt (GPU worker)


class _ProgressTracker:
    """Turns ComfyUI's events into the Progress heartbeat; notes when ComfyUI started the run."""

    def __init__(self, worker: str, prompt_id: str, *, keep_previews: bool = False) -> None:
        self.progress = Progress(phase="queued", worker=worker, comfy_prompt_id=prompt_id)
        self.started_monotonic: float | None = None
        self.started_at: datetime | None = None
        self.keep_previews = keep_previews
        # Newest preview image not yet written; the ticker writes it, so a sampler that sends a
        # frame per step costs at most one file write per tick.
        self.latest_preview: bytes | None = None
        self.preview_write: asyncio.Task[None] | None = None

    def on_event(self, event: ComfyEvent) -> None:
        progress = self.progress
        if isinstance(event, PreviewFrame):
            if self.keep_previews:
                self.latest_preview = event.data
            return
        if isinstance(event, PromptQueued):
            progress.queue_position = event.queue_position
        elif isinstance(event, PromptStarted):
            self._mark_started()
        elif isinstance(event, NodeExecuting):
            self._mark_started()
            progress.node = event.node_id
            progress.class_type = event.class_type
            progress.step = None
            progress.max = None
        elif isinstance(event, NodeProgress):
            self._mark_started()
            progress.node = event.node_id
            progress.step = int(event.value)
            progress.max = int(event.max)
            if event.max > 0:
                progress.percent = round(100.0 * event.value / event.max, 1)
        else:
            return
        self.heartbeat()

    def _mark_started(self) -> None:
        if self.started_monotonic is None:
            self.started_monotonic = time.monotonic()
            self.started_at = datetime.now(UTC)
            self.progress.phase = "running"
            self.progress.queue_position = None

    def heartbeat(self) -> None:
        self.progress.updated_at = datetime.now(UTC)
        activity.heartbeat(self.progress)


class _RunTimedOut(Exception):
    """ComfyUI ran the prompt longer than the manifest allows; it has been interrupted."""


class _HandedBack(Exception):
    """The worker is shutting down and ComfyUI had not started the prompt; it was removed."""


class ExecuteActivities:
    """`execute_prompt`, bound to one GPU worker's ComfyUI client and output store."""

    def __init__(
        self,
        comfy: ComfyUIClient,
        store: OutputStore,
        worker_name: str,
        *,
        tick_seconds: float = 0.5,
        stall_timeout: float | None = None,
        restart_comfyui: Callable[[str], Awaitable[None]] | None = None,
        stall_interrupt_grace: float = STALL_INTERRUPT_GRACE,
    ) -> None:
        self._comfy = comfy
        self._store = store
        self.worker_name = worker_name
        self._tick_seconds = tick_seconds
        self._stall_timeout = stall_timeout
        # Called when a stalled prompt ignores the interrupt: the worker's supervisor kills and
        # restarts ComfyUI, so the GPU is not held by a hung node forever.
        self._restart_comfyui = restart_comfyui
        self._stall_interrupt_grace = stall_interrupt_grace

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(self, request: ExecuteInput) -> ExecuteResult:
        info = activity.info()
        attempt = info.attempt
        prompt_id = prompt_id_for(request.task_id, info.workflow_run_id or "", attempt)
        attempt_key = f"attempt-{attempt}"
        tracker = _ProgressTracker(self.worker_name, prompt_id, keep_previews=request.previews)
        tracker.heartbeat()
        queued_at = datetime.now(UTC)
        try:
            if request.image_inputs:
                # Images the request brought go into this ComfyUI's input directory first; the
                # graph then names the uploaded files.
                prompt = await upload_image_inputs(
                    self._comfy, self._store, request.task_id, request.prompt, request.image_inputs
                )
                request = request.model_copy(update={"prompt": prompt, "image_inputs": []})
            staging = self._store.staging_dir(request.task_id, attempt_key)
            result = await self._run(request, prompt_id, staging, tracker)
            tracker.progress.phase = "storing"
            tracker.heartbeat()
            stored = await self._store.commit(request.task_id, [f.path for f in result.outputs])
        except ComfyUIValidationError as err:
            raise _validation_failure(err, attempt) from None
        except ComfyUIOutOfMemory as err:
            # ComfyUI already unloaded its models after the OOM (comfyui-protocol.md §4.3);
            # ask it to free its cache too, then retry exactly once: a second OOM means the job
            # does not fit.
            with contextlib.suppress(Exception):
                await self._comfy.free(unload_models=True, free_memory=True)
            raise _failure(
                _execution_error(err, attempt, type="ComfyUIOutOfMemory"), non_retryable=attempt > 1
            ) from None
        except ComfyUIExecutionError as err:
            # A node's exception is deterministic for the same graph: a retry gives the same error.
            raise _failure(_execution_error(err, attempt), non_retryable=True) from None
        except ComfyUIInterrupted:
            raise _failure(
                GenerationError(
                    type="ComfyUIInterrupted",
                    message="the prompt was interrupted in ComfyUI by someone else",
                    attempt=attempt,
                ),
                non_retryable=True,
            ) from None
        except ComfyUIStalled as err:
            await self._free_stalled(prompt_id, tracker)
            raise _failure(
                GenerationError(
                    type="ComfyUIStalled",
                    message=f"ComfyUI stopped reporting: {err}",
                    attempt=attempt,
                ),
                non_retryable=False,
            ) from None
        except ComfyUIUnavailable as err:
            raise _failure(
                GenerationError(
                    type="ComfyUIUnavailable",
                    message=f"ComfyUI on {self.worker_name} is unavailable: {err}",
                    attempt=attempt,
                ),
                non_retryable=False,
            ) from None
        except _HandedBack:
            raise _failure(
                GenerationError(
                    type="WorkerShuttingDown",
                    message=f"{self.worker_name} stopped taking work (shutting down, or its "
                    "ComfyUI went down) before the prompt started; it goes back to the queue",
                    attempt=attempt,
                ),
                non_retryable=False,
            ) from None
        except _RunTimedOut:
            raise _failure(
                GenerationError(
                    type="ComfyUITimeout",
                    message="ComfyUI ran longer than the workflow's limit of "
                    f"{request.timeout_seconds:g} s",
                    attempt=attempt,
                ),
                non_retryable=False,
            ) from None
        except OutputPathRefused as err:
            # A name that would leave the store is refused the same way on every attempt.
            raise _failure(
                GenerationError(type="OutputPathRefused", message=str(err), attempt=attempt),
                non_retryable=True,
            ) from None
        except OutputStoreError as err:
            # A full disk or a flaky network mount: the next attempt (maybe on another host)
            # may well write.
            raise _failure(
                GenerationError(type="OutputStoreError", message=str(err), attempt=attempt),
                non_retryable=False,
            ) from None
        finally:
            self._store.discard_staging(request.task_id, attempt_key)
            if request.previews:
                if tracker.preview_write is not None:
                    await asyncio.wait([tracker.preview_write])  # so none lands after this
                self._store.discard_preview(request.task_id)

        by_path = {f.path.name: f for f in result.outputs}
        outputs = [
            OutputRef(
                filename=s.filename,
                content_type=by_path[s.filename].content_type or s.content_type,
                size=s.size,
                node_id=by_path[s.filename].node_id,
                sha256=s.sha256,
            )
            for s in stored
        ]
        return ExecuteResult(
            outputs=outputs,
            worker=self.worker_name,
            comfy_prompt_id=prompt_id,
            cached=result.cached,
            queued_at=queued_at,
            started_at=tracker.started_at,
            finished_at=datetime.now(UTC),
            comfy_execution_seconds=result.execution_seconds,
            attempt=attempt,
        )

    async def _free_stalled(self, prompt_id: str, tracker: _ProgressTracker) -> None:
        """The driver interrupted a stalled prompt. A node that never checks the interrupt flag
        keeps running (comfyui-protocol.md §4.2), and every later prompt would queue behind it:
        if ComfyUI still runs this prompt after a grace period, have ComfyUI restarted."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stall_interrupt_grace
        while True:
            try:
                queue = await self._comfy.queue()
            except Exception:  # not answering: the supervisor's health checks deal with that
                return
            running = {item[1] for item in queue.get("queue_running", [])}
            if prompt_id not in running:
                return
            if loop.time() >= deadline:
                break
            tracker.heartbeat()
            await asyncio.sleep(0.2)
        if self._restart_comfyui is not None:
            await self._restart_comfyui(
                f"prompt {prompt_id} still runs {self._stall_interrupt_grace:g} s after it was "
                "interrupted for stalling"
            )

    async def _run(
        self, request: ExecuteInput, prompt_id: str, staging: Path, tracker: _ProgressTracker
    ) -> PromptResult:
        run = asyncio.create_task(
            self._comfy.run_prompt(
                request.prompt,
                output_dir=staging,
                prompt_id=prompt_id,
                on_event=tracker.on_event,
                output_nodes=request.output_nodes,
                stall_timeout=(
                    request.stall_timeout
                    if request.stall_timeout is not None
                    else self._stall_timeout
                ),
                extra_data=_PREVIEWS_EXTRA_DATA if request.previews else None,
            ),
            name=f"comfyui prompt {prompt_id}",
        )
        stopped: list[Exception] = []
        ticker = asyncio.create_task(
            self._tick(run, tracker, request.timeout_seconds, stopped, request.task_id)
        )
        try:
            # Cancelling this activity cancels `run`; the driver then deletes or interrupts the
            # prompt and waits for ComfyUI to confirm before this await ends (contracts B).
            return await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if stopped and (current is None or current.cancelling() == 0):
                raise stopped[0] from None
            raise
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(
        self,
        run: asyncio.Task,
        tracker: _ProgressTracker,
        timeout_seconds: float | None,
        stopped: list[Exception],
        task_id: str,
    ) -> None:
        """Heartbeat even while ComfyUI is silent (a cancel arrives only in a heartbeat's answer);
        stop a run that exceeds the manifest's limit; on worker shutdown, hand back a prompt that
        ComfyUI has not started yet, so another GPU takes it now instead of after this one drains.
        """
        while not run.done():
            await asyncio.sleep(self._tick_seconds)
            tracker.heartbeat()
            writing = tracker.preview_write is not None and not tracker.preview_write.done()
            if tracker.latest_preview is not None and not writing:
                tracker.preview_write = asyncio.create_task(self._write_preview(task_id, tracker))
            if stopped:
                continue
            if tracker.started_monotonic is None and activity.is_worker_shutdown():
                stopped.append(_HandedBack())
                run.cancel()
            elif (
                timeout_seconds is not None
                and tracker.started_monotonic is not None
                and time.monotonic() - tracker.started_monotonic > timeout_seconds
            ):
                stopped.append(_RunTimedOut())
                run.cancel()

    async def _write_preview(self, task_id: str, tracker: _ProgressTracker) -> None:
        data, tracker.latest_preview = tracker.latest_preview, None
        if data is None:
            return
        try:
            await self._store.write_preview(task_id, data)
        except (OSError, OutputStoreError) as err:  # a preview is a nicety: never fail the job
            logger.warning("preview of %s not written: %s", task_id, err)


def _execution_error(
    err: ComfyUIExecutionError, attempt: int, *, type: str = "ComfyUIExecutionError"
) -> GenerationError:
    where = f"node {err.node_id}" + (f" ({err.class_type})" if err.class_type else "")
    reason = err.exception_message.strip() if err.exception_message else str(err)
    kind = f"{err.exception_type}: " if err.exception_type else ""
    return GenerationError(
        type=type,
        message=f"ComfyUI failed in {where}: {kind}{reason}",
        node_id=err.node_id,
        class_type=err.class_type,
        attempt=attempt,
    )


def _validation_failure(err: ComfyUIValidationError, attempt: int) -> ApplicationError:
    problems = []
    for node_error in err.node_errors:
        where = f"node {node_error.node_id}"
        if node_error.class_type:
            where += f" ({node_error.class_type})"
        if node_error.input_name:
            where += f" input '{node_error.input_name}'"
        detail = node_error.message + (f": {node_error.details}" if node_error.details else "")
        problems.append(f"{where}: {detail}")
    message = "ComfyUI rejected the prompt: " + ("; ".join(problems) if problems else err.message)
    first = err.node_errors[0] if err.node_errors else None
    error = GenerationError(
        type="ComfyUIValidationError",
        message=message,
        node_id=first.node_id if first else None,
        class_type=first.class_type if first else None,
        input_name=first.input_name if first else None,
        attempt=attempt,
    )
    return _failure(error, non_retryable=True)
