"""Why an execute_prompt attempt failed, as the GenerationError the user reads (worded by the
table in temporal_workflows/failures.py); and the one log line an expected failure leaves."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.comfyui.errors import (
    ComfyUIExecutionError,
    ComfyUIInterrupted,
    ComfyUIOutOfMemory,
    ComfyUIStalled,
    ComfyUIUnavailable,
    ComfyUIValidationError,
)
from activities.io.output_store import OutputPathRefused, OutputStoreError
from temporal_workflows.failures import ErrorType, Fault, failure_kind, generation_error
from temporal_workflows.payloads import GenerationError


class RunTimedOut(Exception):
    """ComfyUI ran the prompt longer than the manifest allows; it has been interrupted."""


class HandedBack(Exception):
    """The worker is shutting down and ComfyUI had not started the prompt; it was removed."""


def execute_failure(
    err: BaseException, *, attempt: int, worker: str, time_limit: float | None
) -> GenerationError | None:
    """The GenerationError for what stopped an attempt; None for an error we do not expect (it
    then leaves the activity as it is, with its traceback)."""
    if isinstance(err, ComfyUIValidationError):
        return _validation_error(err, attempt)
    if isinstance(err, ComfyUIOutOfMemory):
        # Retried once by the workflow, after ComfyUI freed its memory (the table's `limit`).
        return _execution_error(err, attempt, ErrorType.COMFYUI_OUT_OF_MEMORY)
    if isinstance(err, ComfyUIExecutionError):
        return _execution_error(err, attempt, ErrorType.COMFYUI_EXECUTION)
    if isinstance(err, ComfyUIInterrupted):
        return generation_error(ErrorType.COMFYUI_INTERRUPTED, attempt=attempt)
    if isinstance(err, ComfyUIStalled):
        return generation_error(ErrorType.COMFYUI_STALLED, attempt=attempt, reason=str(err))
    if isinstance(err, ComfyUIUnavailable):
        return generation_error(
            ErrorType.COMFYUI_UNAVAILABLE, attempt=attempt, worker=worker, reason=str(err)
        )
    if isinstance(err, HandedBack):
        return generation_error(ErrorType.WORKER_SHUTTING_DOWN, attempt=attempt, worker=worker)
    if isinstance(err, RunTimedOut):
        return generation_error(ErrorType.COMFYUI_TIMEOUT, attempt=attempt, limit=time_limit)
    if isinstance(err, OutputPathRefused):
        return generation_error(ErrorType.OUTPUT_PATH_REFUSED, attempt=attempt, reason=str(err))
    if isinstance(err, OutputStoreError):
        return generation_error(ErrorType.OUTPUT_STORE, attempt=attempt, reason=str(err))
    return None


@contextmanager
def reported(task_id: str, logger: logging.Logger) -> Iterator[None]:
    """Log an expected failure leaving the activity in one line: task id, type and reason.

    Expected failures are raised as benign ApplicationErrors, which the SDK logs only at DEBUG
    (with the traceback); anything else keeps the SDK's warning with its traceback.
    """
    try:
        yield
    except ApplicationError as err:
        if err.category == ApplicationErrorCategory.BENIGN:
            info = activity.info()
            fault = failure_kind(err.type or "")
            # A job handed back by a full GPU is routing, not a fault of anyone.
            quiet = fault.fault == Fault.JOB or err.type == ErrorType.GPU_FULL
            logger.log(
                logging.INFO if quiet else logging.WARNING,
                "%s failed for task %s (attempt %d): %s: %s (%s)",
                info.activity_type,
                task_id,
                info.attempt,
                err.type,
                err.message,
                "final" if err.non_retryable else "may be retried",
            )
        raise


def _execution_error(
    err: ComfyUIExecutionError, attempt: int, error_type: ErrorType
) -> GenerationError:
    where = f"node {err.node_id}" + (f" ({err.class_type})" if err.class_type else "")
    reason = err.exception_message.strip() if err.exception_message else str(err)
    kind = f"{err.exception_type}: " if err.exception_type else ""
    return generation_error(
        error_type,
        node_id=err.node_id,
        class_type=err.class_type,
        attempt=attempt,
        where=where,
        reason=f"{kind}{reason}",
    )


def _validation_error(err: ComfyUIValidationError, attempt: int) -> GenerationError:
    problems = []
    for node_error in err.node_errors:
        where = f"node {node_error.node_id}"
        if node_error.class_type:
            where += f" ({node_error.class_type})"
        if node_error.input_name:
            where += f" input '{node_error.input_name}'"
        detail = node_error.message + (f": {node_error.details}" if node_error.details else "")
        problems.append(f"{where}: {detail}")
    first = err.node_errors[0] if err.node_errors else None
    return generation_error(
        ErrorType.COMFYUI_VALIDATION,
        node_id=first.node_id if first else None,
        class_type=first.class_type if first else None,
        input_name=first.input_name if first else None,
        attempt=attempt,
        reason="; ".join(problems) if problems else err.message,
    )
