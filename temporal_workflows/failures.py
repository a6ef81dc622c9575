"""Every failure type a generation can end with, whether a retry can help, whose fault it is and
what the user reads; and how a failure Temporal hands back is read as a GenerationError.

Pure and deterministic: the workflow imports it, and so do the activities and the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ApplicationErrorCategory,
    TimeoutError,
    TimeoutType,
)

from temporal_workflows.payloads import GenerationError


class ErrorType(StrEnum):
    """The `type` of a GenerationError, of the ApplicationError that carries it, and of
    GET /tasks/{id}'s `error`."""

    INVALID_PARAMS = "InvalidParams"
    UNKNOWN_WORKFLOW = "UnknownWorkflow"
    COMFYUI_VALIDATION = "ComfyUIValidationError"
    COMFYUI_EXECUTION = "ComfyUIExecutionError"
    COMFYUI_OUT_OF_MEMORY = "ComfyUIOutOfMemory"
    COMFYUI_INTERRUPTED = "ComfyUIInterrupted"
    COMFYUI_STALLED = "ComfyUIStalled"
    COMFYUI_UNAVAILABLE = "ComfyUIUnavailable"
    COMFYUI_TIMEOUT = "ComfyUITimeout"
    WORKER_SHUTTING_DOWN = "WorkerShuttingDown"
    GPU_FULL = "GpuFull"
    OUTPUT_PATH_REFUSED = "OutputPathRefused"
    OUTPUT_STORE = "OutputStoreError"
    INVALID_IMAGE_INPUT = "InvalidImageInput"
    IMAGE_INPUT_TOO_LARGE = "ImageInputTooLarge"
    IMAGE_INPUT_REFUSED = "ImageInputRefused"
    IMAGE_INPUT_UNAVAILABLE = "ImageInputUnavailable"
    MODEL_URL_REFUSED = "ModelUrlRefused"
    MODEL_UNAVAILABLE = "ModelUnavailable"
    MODEL_HASH_MISMATCH = "ModelHashMismatch"
    MODEL_TOO_LARGE = "ModelTooLarge"
    MODEL_STORE = "ModelStoreError"
    WORKER_LOST = "WorkerLost"
    TIMEOUT = "Timeout"
    ACTIVITY_ERROR = "ActivityError"
    WEBHOOK_REFUSED = "WebhookRefused"
    WEBHOOK_UNREACHABLE = "WebhookUnreachable"
    WEBHOOK_REJECTED = "WebhookRejected"
    WEBHOOK_FAILED = "WebhookFailed"
    TERMINATED = "Terminated"
    TIMED_OUT = "TimedOut"
    DEADLINE_EXCEEDED = "DeadlineExceeded"


class Fault(StrEnum):
    """Whose failure it is, and so which budget a retry spends. JOB: the request, its graph or its
    inputs; another attempt would end the same way, or the job itself asked for the end; retried
    (when retryable) within the manifest's `retries`. INFRASTRUCTURE: a worker, ComfyUI, the store
    or the network failed under a job that may well succeed elsewhere or later; retried for as
    long as the job's `deadline` allows, never spending `retries`."""

    JOB = "job"
    INFRASTRUCTURE = "infrastructure"


@dataclass(frozen=True)
class FailureKind:
    retryable: bool
    """Whether Temporal retries it. An instance may be final where its type is not (a second
    out-of-memory, a download answered 404); never the other way round."""
    fault: Fault
    text: str
    """What the user reads: a str.format template over the failure's details."""
    limit: int | None = None
    """Retries of this type a job gets in all, past its fault's budget; the one after is final."""


_JOB, _INFRA = Fault.JOB, Fault.INFRASTRUCTURE
_IMAGE_TEXT = "image parameter '{param}': {reason}"
_MODEL_TEXT = "model parameter '{param}' ({url}): {reason}"

FAILURES: dict[ErrorType, FailureKind] = {
    # Rendering (prepare_generation): the request does not fit the manifest.
    ErrorType.INVALID_PARAMS: FailureKind(False, _JOB, "{reason}"),
    ErrorType.UNKNOWN_WORKFLOW: FailureKind(False, _JOB, "{reason}"),
    # ComfyUI's answers about this graph are deterministic: a retry gives the same error.
    ErrorType.COMFYUI_VALIDATION: FailureKind(False, _JOB, "ComfyUI rejected the prompt: {reason}"),
    ErrorType.COMFYUI_EXECUTION: FailureKind(False, _JOB, "ComfyUI failed in {where}: {reason}"),
    # ComfyUI unloaded its models and freed its memory: the first OOM may be what earlier runs
    # left behind, and is retried once; a second means the job does not fit, and is final.
    ErrorType.COMFYUI_OUT_OF_MEMORY: FailureKind(
        True, _INFRA, "ComfyUI failed in {where}: {reason}", limit=1
    ),
    # Someone stopped this prompt in ComfyUI on purpose: not ours to undo.
    ErrorType.COMFYUI_INTERRUPTED: FailureKind(
        False, _JOB, "the prompt was interrupted in ComfyUI by someone else"
    ),
    ErrorType.COMFYUI_STALLED: FailureKind(True, _INFRA, "ComfyUI stopped reporting: {reason}"),
    ErrorType.COMFYUI_UNAVAILABLE: FailureKind(
        True, _INFRA, "ComfyUI on {worker} is unavailable: {reason}"
    ),
    ErrorType.COMFYUI_TIMEOUT: FailureKind(
        True, _JOB, "ComfyUI ran longer than the workflow's limit of {limit:g} s"
    ),
    ErrorType.WORKER_SHUTTING_DOWN: FailureKind(
        True,
        _INFRA,
        "{worker} stopped taking work (shutting down, or its ComfyUI went down) before the "
        "prompt started; it goes back to the queue",
    ),
    # Both Workers of a GPU worker may hold a poll opened while its GPU was idle; a job the second
    # one receives once the first filled the GPU goes back to the queue at once, for a free GPU
    # (activities/workers/prefetch_slots.py). Not counted as a retry of the job.
    ErrorType.GPU_FULL: FailureKind(
        True, _INFRA, "{worker} took the job while its GPU was full; it goes back to the queue"
    ),
    # A name that would leave the store is refused the same way on every attempt.
    ErrorType.OUTPUT_PATH_REFUSED: FailureKind(False, _JOB, "{reason}"),
    # A full disk or a flaky network mount: the next attempt (maybe on another host) may write.
    ErrorType.OUTPUT_STORE: FailureKind(True, _INFRA, "{reason}"),
    ErrorType.INVALID_IMAGE_INPUT: FailureKind(False, _JOB, _IMAGE_TEXT),
    ErrorType.IMAGE_INPUT_TOO_LARGE: FailureKind(False, _JOB, _IMAGE_TEXT),
    ErrorType.IMAGE_INPUT_REFUSED: FailureKind(False, _JOB, _IMAGE_TEXT),
    # Final when the server answered 4xx (except 408/429); a 5xx or a network error may pass. The
    # server is the request's, not ours: its failures spend the job's retries.
    ErrorType.IMAGE_INPUT_UNAVAILABLE: FailureKind(True, _JOB, _IMAGE_TEXT),
    # Model files by URL (activities/models/): the address policy and the size cap answer the
    # same on every attempt, and so does a file whose bytes do not match the hash it was given.
    ErrorType.MODEL_URL_REFUSED: FailureKind(False, _JOB, _MODEL_TEXT),
    ErrorType.MODEL_TOO_LARGE: FailureKind(False, _JOB, _MODEL_TEXT),
    ErrorType.MODEL_HASH_MISMATCH: FailureKind(False, _JOB, _MODEL_TEXT),
    # Final when the server answered 4xx (404, 403, ...) except 408/429; a 5xx or a cut
    # connection is retried, and the retry resumes the partial file (HTTP Range).
    # The server is the request's, not ours: its failures spend the job's retries.
    ErrorType.MODEL_UNAVAILABLE: FailureKind(True, _JOB, _MODEL_TEXT),
    # The worker cannot keep the file (no models directory, a full disk): another may.
    ErrorType.MODEL_STORE: FailureKind(True, _INFRA, _MODEL_TEXT),
    # No heartbeat for 10 s: Temporal's heartbeat timeout, retried on another GPU.
    ErrorType.WORKER_LOST: FailureKind(
        True, _INFRA, "the GPU worker stopped reporting (it or its host died)"
    ),
    # The GPU step's start-to-close backstop (2 x timeout + 60 s): the worker's own run limit
    # (ComfyUITimeout) ends a long run first, so this one means a worker that is stuck.
    ErrorType.TIMEOUT: FailureKind(True, _INFRA, "the generation exceeded its time limit{limit}"),
    # An activity raised something we do not know: a bug, or a fault below us. It spends the job's
    # retries, so a bug that fails every time ends the job instead of retrying until the deadline.
    ErrorType.ACTIVITY_ERROR: FailureKind(True, _JOB, "the GPU worker failed: {reason}"),
    # Webhook deliveries (the `notify` activity); they never change the generation's outcome.
    ErrorType.WEBHOOK_REFUSED: FailureKind(False, _JOB, "callback_url {reason}"),
    ErrorType.WEBHOOK_UNREACHABLE: FailureKind(True, _INFRA, "could not reach {url}: {reason}"),
    ErrorType.WEBHOOK_REJECTED: FailureKind(False, _JOB, "{reason}"),
    ErrorType.WEBHOOK_FAILED: FailureKind(True, _INFRA, "{reason}"),
    # How the API reads a run that an operator or a workflow timeout ended.
    ErrorType.TERMINATED: FailureKind(False, _JOB, "terminated"),
    ErrorType.TIMED_OUT: FailureKind(False, _JOB, "workflow execution timed out"),
    # The manifest's `deadline` passed while infrastructure faults (or a backlog) held the job.
    ErrorType.DEADLINE_EXCEEDED: FailureKind(
        False, _INFRA, "the job's deadline of {deadline:g} s passed before it could finish{last}"
    ),
}

# Temporal never retries these, whatever the activity said (prepare's retry policy, and the GPU
# step's in workflows started before the two budgets).
NON_RETRYABLE_ERROR_TYPES = [str(t) for t, kind in FAILURES.items() if not kind.retryable]

# The GPU step's retry policy: Temporal retries infrastructure faults in place (the same activity,
# no new history), for as long as the deadline allows; every other failure goes back to the
# workflow, which retries the job's own within `retries` and a limited type up to its limit.
RETRIED_IN_PLACE = [
    str(t)
    for t, kind in FAILURES.items()
    if kind.retryable and kind.fault == Fault.INFRASTRUCTURE and kind.limit is None
]
NOT_RETRIED_IN_PLACE = [str(t) for t in FAILURES if str(t) not in RETRIED_IN_PLACE]


def failure_kind(error_type: str) -> FailureKind:
    """The table's row for a type; a type we do not produce reads as an unexpected error."""
    try:
        return FAILURES[ErrorType(error_type)]
    except ValueError:
        return FAILURES[ErrorType.ACTIVITY_ERROR]


def generation_error(
    error_type: ErrorType,
    *,
    retryable: bool | None = None,
    node_id: str | None = None,
    class_type: str | None = None,
    input_name: str | None = None,
    param: str | None = None,
    attempt: int | None = None,
    **text: Any,
) -> GenerationError:
    """A GenerationError worded by the table (`text` fills its template); `retryable` only where
    this instance is final although its type is not."""
    kind = FAILURES[error_type]
    if param is not None:
        text.setdefault("param", param)
    return GenerationError(
        type=str(error_type),
        message=kind.text.format(**text),
        node_id=node_id,
        class_type=class_type,
        input_name=input_name,
        param=param,
        retryable=kind.retryable if retryable is None else retryable,
        attempt=attempt,
    )


def activity_failure(
    error: GenerationError, *more_details: Any, next_retry_delay: timedelta | None = None
) -> ApplicationError:
    """What an activity raises for `error`: Temporal retries it only when `error.retryable`.

    Marked benign: the SDK then logs it at DEBUG instead of a warning with a traceback, since the
    activity reports an expected failure in one line itself.
    """
    return ApplicationError(
        error.message,
        error,
        *more_details,
        type=error.type,
        non_retryable=not error.retryable,
        category=ApplicationErrorCategory.BENIGN,
        next_retry_delay=next_retry_delay,
    )


def decode_generation_error(
    failure: BaseException | None, *, time_limit: float | None = None
) -> GenerationError | None:
    """The GenerationError a failure from Temporal stands for; None when it holds nothing of ours
    (a cancellation, a termination, a bare exception), which the caller words itself.

    Follows the cause chain. The first ApplicationError gives the GenerationError in its details
    (the object itself inside the workflow, a plain dict after a client's converter); lacking one,
    an activity's error reads as ActivityError, the workflow's own as its type and message. The
    first activity TimeoutError gives WorkerLost (no heartbeat) or Timeout, worded with
    `time_limit` (seconds) when known.
    """
    from_activity = False
    seen: list[BaseException] = []
    cause = failure
    while cause is not None and cause not in seen:
        seen.append(cause)
        if isinstance(cause, ActivityError):
            from_activity = True
        elif isinstance(cause, ApplicationError):
            return _carried(cause) or _uncarried(cause, from_activity)
        elif isinstance(cause, TimeoutError):
            if cause.type == TimeoutType.HEARTBEAT:
                return generation_error(ErrorType.WORKER_LOST)
            limit = f" of {time_limit:g} s" if time_limit is not None else ""
            return generation_error(ErrorType.TIMEOUT, limit=limit)
        cause = cause.__cause__
    return None


def _carried(err: ApplicationError) -> GenerationError | None:
    for detail in err.details:
        if isinstance(detail, GenerationError):
            return detail
        if isinstance(detail, dict):
            try:
                return GenerationError.model_validate(detail)
            except ValueError:
                continue
    return None


def _uncarried(err: ApplicationError, from_activity: bool) -> GenerationError:
    if from_activity:
        return GenerationError(
            type=err.type or str(ErrorType.ACTIVITY_ERROR),
            message=FAILURES[ErrorType.ACTIVITY_ERROR].text.format(reason=err.message),
        )
    return GenerationError(type=err.type or "Error", message=err.message)
