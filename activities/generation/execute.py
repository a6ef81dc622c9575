"""`execute_prompt` (GPU worker): where a generation meets ComfyUI. It submits the graph,
heartbeats progress, reacts to cancellation by deleting or interrupting the prompt, and stores the
outputs; what stops an attempt becomes a GenerationError in activities/generation/failures.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, FailureError

from activities.comfyui.errors import ComfyUIError, ComfyUIOutOfMemory, ComfyUIStalled
from activities.comfyui.events import (
    NodeExecuting,
    NodeProgress,
    PreviewFrame,
    PromptQueued,
    PromptStarted,
)
from activities.generation.failures import HandedBack, RunTimedOut, execute_failure, reported
from activities.generation.image_uploads import upload_image_inputs
from activities.generation.model_inputs import fetch_model_inputs
from activities.generation.node_clock import NodeClock
from activities.generation.node_spans import record_node_spans
from activities.io.output_store import OutputStore, OutputStoreError
from activities.workers.logs import job_log_context
from temporal_workflows.failures import ErrorType, activity_failure, generation_error
from temporal_workflows.names import EXECUTE_ACTIVITY
from temporal_workflows.payloads import (
    ExecuteInput,
    ExecuteResult,
    ModelInputRef,
    OutputRef,
    Progress,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from activities.comfyui.client import ComfyUIClient
    from activities.comfyui.events import ComfyEvent
    from activities.comfyui.outputs import PromptResult
    from activities.models.store import ModelStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Namespace for prompt ids: the same task, try and attempt always get the same ComfyUI prompt id,
# so the prompt can be found in ComfyUI's queue and history from the task id alone.
_PROMPT_ID_NAMESPACE = uuid.UUID("5f0c6a52-3f7e-4f7c-9d0e-2b1c8a7e4d10")


# Per-prompt override of ComfyUI's --preview-method (default none): "auto" gives cheap latent2rgb
# JPEG previews from samplers (comfyui-protocol.md §1.4, §3.3).
_PREVIEWS_EXTRA_DATA = {"preview_method": "auto"}

# How long a prompt interrupted for stalling may take to stop before ComfyUI is restarted.
STALL_INTERRUPT_GRACE = 5.0


def prompt_id_for(task_id: str, run_id: str, try_number: int, attempt: int) -> str:
    """One id per Temporal attempt of each execute activity the workflow scheduled."""
    return str(uuid.uuid5(_PROMPT_ID_NAMESPACE, f"{task_id}/{run_id}/{try_number}/{attempt}"))


# A job handed back for a full GPU is offered again this soon (no backoff: it did not fail).
_HAND_BACK_DELAY = timedelta(milliseconds=50)


def _handed_back(info: activity.Info) -> int:
    """Hand-backs of earlier attempts of this activity, from their last heartbeat."""
    for detail in info.heartbeat_details[:1]:
        try:
            return Progress.model_validate(detail).handed_back
        except ValueError:
            return 0
    return 0


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    # Temporal's clock and this worker's: never negative, whatever their skew.
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


# ---------------------------------------------------------------------------------------------
# execute_prompt (GPU worker)


class _ProgressTracker:
    """Turns ComfyUI's events into the Progress heartbeat; notes when ComfyUI started the run and
    how long each node took."""

    def __init__(
        self,
        worker: str,
        prompt_id: str,
        graph: dict[str, Any],
        *,
        keep_previews: bool = False,
    ) -> None:
        self.progress = Progress(phase="queued", worker=worker, comfy_prompt_id=prompt_id)
        self.nodes = NodeClock(graph)
        self.started_monotonic: float | None = None
        self.started_at: datetime | None = None
        self.keep_previews = keep_previews
        # Newest preview image not yet written; the ticker writes it, so a sampler that sends a
        # frame per step costs at most one file write per tick.
        self.latest_preview: bytes | None = None
        self.preview_write: asyncio.Task[None] | None = None

    def on_event(self, event: ComfyEvent) -> None:
        self.nodes.on_event(event)
        progress = self.progress
        if isinstance(event, PreviewFrame):
            if self.keep_previews:
                self.latest_preview = event.data
            return
        if isinstance(event, PromptQueued):
            progress.queue_position = event.queue_position
            self.heartbeat()
            return
        if not isinstance(event, PromptStarted | NodeExecuting | NodeProgress):
            return
        started = self._mark_started()
        if isinstance(event, NodeExecuting):
            progress.node = event.node_id
            progress.class_type = event.class_type
            progress.step = None
            progress.max = None
        elif isinstance(event, NodeProgress):
            progress.node = event.node_id
            progress.step = int(event.value)
            progress.max = int(event.max)
            if event.max > 0:
                progress.percent = round(100.0 * event.value / event.max, 1)
        # Only the start is sent at once. Nodes and steps ride on the ticker's heartbeat (every
        # tick, which is the SDK's throttle interval anyway): each heartbeat call encodes the
        # Progress and crosses into the SDK core, which sends only the latest one per interval;
        # per node and step, that was the GPU worker's largest cost on short jobs (py-spy).
        if started:
            self.heartbeat()

    def _mark_started(self) -> bool:
        """Note that ComfyUI runs the prompt; True the first time."""
        if self.started_monotonic is not None:
            return False
        self.started_monotonic = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.progress.phase = "running"
        self.progress.queue_position = None
        return True

    def heartbeat(self) -> None:
        self.progress.updated_at = datetime.now(UTC)
        activity.heartbeat(self.progress)


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
        models: ModelStore | None = None,
        on_job_end: Callable[[], None] | None = None,
        tracer: Tracer | None = None,
        record_execution: Callable[[float], None] | None = None,
        submitted: Callable[[dict[str, Any]], None] | None = None,
        models_dropped: Callable[[], None] | None = None,
        gpu_full: Callable[[], bool] | None = None,
    ) -> None:
        self._comfy = comfy
        # Told of each graph ComfyUI gets, and when ComfyUI drops its models (after an
        # out-of-memory error): which models it holds loaded, for routing (docs/routing.md).
        self._submitted = submitted
        self._models_dropped = models_dropped
        # Whether this worker's GPU holds more jobs than it has room for (prefetch_slots.py).
        self._gpu_full = gpu_full
        # Where model files given by URL go; None: this worker refuses them (docs/models.md).
        self._models = models
        self._store = store
        self.worker_name = worker_name
        self._tick_seconds = tick_seconds
        self._stall_timeout = stall_timeout
        # Called when a stalled prompt ignores the interrupt: the worker's supervisor kills and
        # restarts ComfyUI, so the GPU is not held by a hung node forever.
        self._restart_comfyui = restart_comfyui
        self._stall_interrupt_grace = stall_interrupt_grace
        # Told when a job ends, whatever its outcome: the worker counts them and measures
        # ComfyUI's memory between jobs (activities/workers/recycling.py).
        self._on_job_end = on_job_end
        # On worker shutdown, a prompt ComfyUI has not started yet goes back to the queue. Off
        # while the worker drains to recycle ComfyUI: that prompt runs here, next, and no attempt
        # of it is spent.
        self.hand_back_on_shutdown = True
        # With traces on: a span per node ComfyUI ran, failed attempts included.
        self._tracer = tracer
        # Told ComfyUI's execution time of each prompt that ran: the prefetch depth follows it.
        self._record_execution = record_execution

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(self, request: ExecuteInput) -> ExecuteResult:
        with (
            job_log_context(
                request.task_id,
                workflow=request.workflow_id,
                worker=self.worker_name,
                attempt=activity.info().attempt,
            ),
            reported(request.task_id, logger),
        ):
            try:
                return await self._execute(request)
            except FailureError:  # ours (an ApplicationError), or Temporal's own
                raise
            except Exception as err:
                # Typed, so the workflow counts it against the job's retries instead of Temporal
                # retrying an unknown type until the deadline; the SDK still logs its traceback.
                error = generation_error(
                    ErrorType.ACTIVITY_ERROR,
                    attempt=activity.info().attempt,
                    reason=f"{type(err).__name__}: {err}",
                )
                raise ApplicationError(error.message, error, type=error.type) from err
            finally:
                if self._on_job_end is not None:
                    self._on_job_end()

    async def _execute(self, request: ExecuteInput) -> ExecuteResult:
        info = activity.info()
        attempt = info.attempt
        prompt_id = prompt_id_for(
            request.task_id, info.workflow_run_id or "", request.try_number, attempt
        )
        attempt_key = f"attempt-{request.try_number}.{attempt}"
        tracker = _ProgressTracker(
            self.worker_name, prompt_id, request.prompt, keep_previews=request.previews
        )
        tracker.progress.handed_back = _handed_back(info)
        if self._gpu_full is not None and self._gpu_full():
            # A poll opened while the GPU was idle brought this job after another filled it:
            # back to the queue at once, for a GPU with room.
            tracker.progress.handed_back += 1
            tracker.heartbeat()
            full = generation_error(ErrorType.GPU_FULL, attempt=attempt, worker=self.worker_name)
            raise activity_failure(full, next_retry_delay=_HAND_BACK_DELAY)
        if request.model_inputs:
            tracker.progress.phase = "downloading_model"  # the task's phases only move forward
        tracker.heartbeat()
        queued_at = datetime.now(UTC)
        models: list[ModelInputRef] = []
        logger.debug(
            "task %s: attempt %d as ComfyUI prompt %s", request.task_id, attempt, prompt_id
        )
        try:
            if request.model_inputs:
                # Model files named by URL must be in ComfyUI's model folders before it
                # validates the graph, which already names them.
                prompt = await fetch_model_inputs(
                    self._models,
                    request.model_inputs,
                    request.prompt,
                    progress=tracker.progress,
                    heartbeat=tracker.heartbeat,
                    acquired=models,
                    tick_seconds=self._tick_seconds,
                )
                request = request.model_copy(update={"prompt": prompt, "model_inputs": []})
            if request.image_inputs:
                # Images the request brought go into this ComfyUI's input directory first; the
                # graph then names the uploaded files.
                prompt = await upload_image_inputs(
                    self._comfy, self._store, request.task_id, request.prompt, request.image_inputs
                )
                request = request.model_copy(update={"prompt": prompt, "image_inputs": []})
            staging = self._store.staging_dir(request.task_id, attempt_key)
            if self._submitted is not None:
                self._submitted(request.prompt)
            result = await self._run(request, prompt_id, staging, tracker)
            node_timings = tracker.nodes.timings()
            if self._record_execution is not None:
                self._record_execution(result.execution_seconds or 0.0)
            tracker.progress.phase = "storing"
            tracker.heartbeat()
            # An upload to an object store can outlast the heartbeat timeout: keep beating.
            stored = await self._while_heartbeating(
                tracker,
                self._store.commit(
                    request.task_id,
                    [f.path for f in result.outputs],
                    run_id=info.workflow_run_id or "",
                    attempt=attempt,
                ),
            )
        except (ComfyUIError, OutputStoreError, HandedBack, RunTimedOut) as err:
            error = execute_failure(
                err, attempt=attempt, worker=self.worker_name, time_limit=request.timeout_seconds
            )
            if error is None:
                raise
            if isinstance(err, ComfyUIOutOfMemory):
                # ComfyUI already unloaded its models after the OOM (comfyui-protocol.md §4.3);
                # ask it to free its cache too before the one retry.
                with contextlib.suppress(Exception):
                    await self._comfy.free(unload_models=True, free_memory=True)
                if self._models_dropped is not None:
                    self._models_dropped()
            elif isinstance(err, ComfyUIStalled):
                await self._free_stalled(prompt_id, tracker)
            raise activity_failure(error) from None
        finally:
            for model in models:
                if self._models is not None:
                    self._models.release(model)
            if self._tracer is not None:
                record_node_spans(self._tracer, tracker.nodes.runs(), prompt_id=prompt_id)
            self._store.discard_staging(request.task_id, attempt_key)
            if request.previews:
                if tracker.preview_write is not None:
                    await asyncio.wait([tracker.preview_write])  # so none lands after this
                await self._store.discard_preview(request.task_id)

        by_path = {f.path.name: f for f in result.outputs}
        outputs = []
        for s in stored:
            # None when an earlier attempt of this run committed first (an object store keeps
            # its files then, which ComfyUI may have numbered differently).
            saved = by_path.get(s.filename)
            outputs.append(
                OutputRef(
                    filename=s.filename,
                    content_type=(saved.content_type if saved else None) or s.content_type,
                    size=s.size,
                    node_id=saved.node_id if saved else "",
                    sha256=s.sha256,
                    store_key=s.store_key,
                )
            )
        logger.info(
            "task %s: done as ComfyUI prompt %s, %d output(s), ComfyUI ran it in %s s",
            request.task_id,
            prompt_id,
            len(outputs),
            "?" if result.execution_seconds is None else f"{result.execution_seconds:.2f}",
        )
        return ExecuteResult(
            outputs=outputs,
            worker=self.worker_name,
            comfy_prompt_id=prompt_id,
            cached=result.cached,
            queued_at=queued_at,
            started_at=tracker.started_at,
            finished_at=datetime.now(UTC),
            comfy_execution_seconds=result.execution_seconds,
            attempt=attempt - tracker.progress.handed_back,
            queue_wait_seconds=_seconds_between(
                info.current_attempt_scheduled_time, tracker.started_at
            ),
            node_timings=node_timings,
        )

    async def _while_heartbeating(self, tracker: _ProgressTracker, work: Awaitable[T]) -> T:
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=self._tick_seconds)
                if done:
                    return task.result()
                tracker.heartbeat()
        finally:
            task.cancel()

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
        run: asyncio.Task[PromptResult],
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
            if (
                tracker.started_monotonic is None
                and activity.is_worker_shutdown()
                and self.hand_back_on_shutdown
            ):
                stopped.append(HandedBack())
                run.cancel()
            elif (
                timeout_seconds is not None
                and tracker.started_monotonic is not None
                and time.monotonic() - tracker.started_monotonic > timeout_seconds
            ):
                stopped.append(RunTimedOut())
                run.cancel()

    async def _write_preview(self, task_id: str, tracker: _ProgressTracker) -> None:
        data, tracker.latest_preview = tracker.latest_preview, None
        if data is None:
            return
        try:
            await self._store.write_preview(task_id, data)
        except (OSError, OutputStoreError) as err:  # a preview is a nicety: never fail the job
            logger.warning("preview of %s not written: %s", task_id, err)
