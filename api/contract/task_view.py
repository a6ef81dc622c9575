"""How an ended generation reads, the same in GET /tasks/{id} and in its webhook: the `result`
and `error` of a task, and the URLs of the task and its files."""

from __future__ import annotations

from urllib.parse import quote

from api.contract.signed_urls import UrlSigner
from api.contract.task_schemas import (
    NodeTimingPublic,
    OutputPublic,
    TaskError,
    TaskResult,
    TaskStatusName,
    TaskTimings,
)
from temporal_workflows.payloads import GenerationError, GenerationResult


def status_url(base_url: str, task_id: str) -> str:
    return f"{base_url}/tasks/{quote(task_id, safe='')}"


def output_url(
    base_url: str,
    task_id: str,
    filename: str,
    signer: UrlSigner | None = None,
    *,
    signed_at: float | None = None,
) -> str:
    """The file's download URL; with a signer it carries `?expires=&sig=` (works without a key),
    valid for the signer's TTL from `signed_at` (unix seconds; default now)."""
    url = f"{base_url}/tasks/{quote(task_id, safe='')}/outputs/{quote(filename, safe='')}"
    if signer is not None:
        url += "?" + signer.sign(task_id, filename, now=signed_at).query()
    return url


def finished_view(
    outcome: TaskStatusName,
    result: GenerationResult | None,
    error: GenerationError | None,
    cancel_reason: str | None,
    base_url: str,
    signer: UrlSigner | None = None,
    *,
    signed_at: float | None = None,
) -> tuple[TaskResult | str | None, TaskError | None]:
    """`result` and `error` of an ended generation, as GET /tasks/{id} and webhooks show them;
    download URLs are signed at `signed_at` (unix seconds; default now) when a signer is given."""
    if outcome == "SUCCESS" and result is not None:
        return success_result(result, base_url, signer, signed_at), None
    if outcome == "CANCELLED":
        return "cancelled" + (f": {cancel_reason}" if cancel_reason else ""), None
    if error is not None:
        return reason_text(error), task_error(error)
    return "failed", None


def success_result(
    result: GenerationResult,
    base_url: str,
    signer: UrlSigner | None = None,
    signed_at: float | None = None,
) -> TaskResult:
    outputs = [
        OutputPublic(
            filename=o.filename,
            url=output_url(base_url, result.task_id, o.filename, signer, signed_at=signed_at),
            content_type=o.content_type,
            size=o.size,
            node_id=o.node_id,
        )
        for o in result.outputs
    ]
    return TaskResult(
        download_url=outputs[0].url if outputs else None,
        outputs=outputs,
        params=result.params,
        timings=timings_view(result),
        worker=result.worker,
        attempts=result.attempts,
        revision=result.revision,
    )


def timings_view(result: GenerationResult) -> TaskTimings:
    """The result's timings, with its per-node times as `nodes`; keys the result does not know
    (an unknown measure) are dropped rather than refused."""
    known = {k: v for k, v in result.timings.items() if k in TaskTimings.model_fields}
    nodes = [NodeTimingPublic(**node.model_dump()) for node in result.node_timings]
    return TaskTimings(**known, nodes=nodes)


def task_error(error: GenerationError) -> TaskError:
    return TaskError(
        type=error.type,
        message=error.message,
        node_id=error.node_id,
        class_type=error.class_type,
        param=error.param,
    )


def reason_text(error: GenerationError) -> str:
    """E.g. "ComfyUIExecutionError: CUDA out of memory (node 3, KSampler)"."""
    named = error.message
    where = ", ".join(
        part
        for part in (
            f"node {error.node_id}"
            if error.node_id and f"node {error.node_id}" not in named
            else None,
            error.class_type if error.class_type and error.class_type not in named else None,
            f"parameter '{error.param}'" if error.param and error.param not in named else None,
        )
        if part
    )
    return f"{error.type}: {error.message}" + (f" ({where})" if where else "")
