"""Domain errors of the API and the one place they become HTTP answers.

Routes raise these (or the manifest layer's ParamsInvalid / UnknownWorkflow, or a signed URL's
DownloadForbidden); `install_error_handlers` translates them. Client errors always get a 4xx whose
body names the field and the reason, in FastAPI's 422 shape:
{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}.
Anything unexpected becomes a 500 with an error id and no stack trace; the trace goes to the log.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

from api.contract.signed_urls import DownloadForbidden
from manifests.errors import ParamsInvalid, UnknownWorkflow

log = logging.getLogger("api")

# A refused value is echoed back (`input`) up to this many characters: a 100 000-character
# string is named and measured, not returned whole.
MAX_ECHOED_CHARS = 200


class ErrorResponse(JSONResponse):
    """JSON with everything beyond ASCII escaped, so any text renders (even text that UTF-8
    cannot carry, which would otherwise turn a 4xx into a dropped connection)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


class ApiError(Exception):
    """An error with a fixed HTTP status and a message a user can act on."""

    status_code = 400
    error_type = "bad_request"

    def __init__(self, message: str, *, loc: list[str | int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc

    def headers(self) -> dict[str, str] | None:
        """Extra response headers (e.g. WWW-Authenticate on a 401)."""
        return None

    def detail(self) -> Any:
        if self.loc is None:
            return self.message
        return [{"loc": self.loc, "msg": self.message, "type": self.error_type}]


class TaskNotFound(ApiError):
    status_code = 404
    error_type = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id '{task_id}'", loc=["path", "task_id"])
        self.task_id = task_id


class WorkflowNotFound(ApiError):
    status_code = 404
    error_type = "workflow_not_found"

    def __init__(self, workflow_id: str, known: list[str]) -> None:
        known_text = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"unknown workflow '{workflow_id}' (known: {known_text})", loc=["path", "workflow_id"]
        )


class OutputNotFound(ApiError):
    status_code = 404
    error_type = "output_not_found"


class InvalidOutputName(ApiError):
    """A file name that would leave the task's output folder (../, absolute, encoded separators)."""

    status_code = 400
    error_type = "invalid_output_name"


class InvalidQuery(ApiError):
    status_code = 422
    error_type = "value_error"


class OutputStoreUnavailable(ApiError):
    """The output store did not answer (an object store that is down or unreachable)."""

    status_code = 503
    error_type = "output_store_unavailable"


class TemporalUnavailable(ApiError):
    status_code = 503
    error_type = "temporal_unavailable"


def _params_invalid(exc: ParamsInvalid) -> JSONResponse:
    detail = [
        {
            "loc": ["body", "params", e.param, *([e.field] if e.field is not None else [])],
            "msg": e.reason,
            "type": "param_invalid",
        }
        for e in exc.errors
    ]
    return ErrorResponse(status_code=422, content={"detail": detail})


def _unknown_workflow(exc: UnknownWorkflow) -> JSONResponse:
    detail = [
        {
            "loc": ["body", "workflow_id"],
            "msg": str(exc),
            "type": "unknown_workflow",
            "ctx": {"known": exc.known},
        }
    ]
    return ErrorResponse(status_code=422, content={"detail": detail})


def _download_forbidden(exc: DownloadForbidden) -> JSONResponse:
    detail = [{"loc": ["query", exc.param], "msg": exc.message, "type": "download_forbidden"}]
    return ErrorResponse(status_code=403, content={"detail": detail})


def _shortened(error: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's entry for one refused field, its echoed input cut to MAX_ECHOED_CHARS."""
    value = error.get("input")
    if isinstance(value, str) and len(value) > MAX_ECHOED_CHARS:
        return {**error, "input": f"{value[:MAX_ECHOED_CHARS]}… ({len(value)} characters)"}
    if isinstance(value, dict | list) and len(json.dumps(value)) > MAX_ECHOED_CHARS:
        return {key: item for key, item in error.items() if key != "input"}
    return error


def install_error_handlers(app: FastAPI) -> None:
    """Register the translation of every domain error; FastAPI's own 422 for bodies stays as is."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return ErrorResponse(
            status_code=exc.status_code, content={"detail": exc.detail()}, headers=exc.headers()
        )

    async def on_params_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ParamsInvalid)
        return _params_invalid(exc)

    async def on_unknown_workflow(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UnknownWorkflow)
        return _unknown_workflow(exc)

    async def on_download_forbidden(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DownloadForbidden)
        return _download_forbidden(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = [_shortened(error) for error in jsonable_encoder(exc.errors())]
        return ErrorResponse(status_code=422, content={"detail": detail})

    async def on_rpc_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RPCError)
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            log.warning("Temporal unreachable on %s %s: %s", request.method, request.url.path, exc)
            return ErrorResponse(
                status_code=503,
                content={"detail": f"Temporal is not reachable ({exc.message}); try again later"},
            )
        return await on_unexpected(request, exc)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.exception("unexpected error %s on %s %s", error_id, request.method, request.url.path)
        return ErrorResponse(
            status_code=500,
            content={"detail": f"internal error (id {error_id}); the server log has the details"},
        )

    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(ParamsInvalid, on_params_invalid)
    app.add_exception_handler(UnknownWorkflow, on_unknown_workflow)
    app.add_exception_handler(DownloadForbidden, on_download_forbidden)
    app.add_exception_handler(RPCError, on_rpc_error)
    app.add_exception_handler(Exception, on_unexpected)
