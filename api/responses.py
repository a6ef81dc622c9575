"""The error answers every route documents in OpenAPI, in the one shape `api.errors` sends.

`error_responses(404, 409)` gives a route's `responses=` entries; `document_common_errors` adds
the answers any operation can give (401 with API keys on, 413 for a body over the limit, 422,
503 while Temporal is unreachable), so the document lists every status the API returns.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorEntry(BaseModel):
    """One problem: where (`loc`), what (`msg`), and a machine-readable `type`."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: a list of problems naming the field, or one readable sentence."""

    detail: list[ErrorEntry] | str = Field(description="Problems by field, or one message.")


DEFAULT_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request (e.g. a body that is not UTF-8 text).",
    401: "API keys are on and the request has no valid one (see WWW-Authenticate).",
    403: "Forbidden.",
    404: "Not found.",
    409: "Conflicts with the current state.",
    413: "The request body (or `params`) is over the size limit.",
    422: "Invalid input; one entry per bad field.",
    429: "Too many jobs wait in the pool; try again after `Retry-After` seconds.",
    503: "Temporal is not reachable; try again later.",
}


def error_responses(
    *codes: int, descriptions: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    texts = {**DEFAULT_DESCRIPTIONS, **(descriptions or {})}
    return {code: {"model": ErrorBody, "description": texts[code]} for code in codes}


_ERROR_REF = "#/components/schemas/ErrorBody"
_REF_TEMPLATE = "#/components/schemas/{model}"


def document_common_errors(document: dict[str, Any], *, no_temporal: set[str]) -> None:
    """Adds to each operation (in place) the answers it can give besides its own: 401 where it
    declares security, 400 (undecodable) and 413 where it takes a body, 422 where it takes
    input, and 503 unless its path is in `no_temporal` (answers without asking Temporal)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template=_REF_TEMPLATE))
    for name, schema in (
        ErrorBody.model_json_schema(ref_template=_REF_TEMPLATE).get("$defs", {}).items()
    ):
        schemas.setdefault(name, schema)
    schemas["ErrorBody"].pop("$defs", None)
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes: list[int] = []
            if operation.get("security"):
                codes.append(401)
            if "requestBody" in operation:
                codes += [400, 413]
            if "requestBody" in operation or operation.get("parameters"):
                codes.append(422)
            if path not in no_temporal:
                codes.append(503)
            for code in codes:
                operation["responses"].setdefault(
                    str(code),
                    {
                        "description": DEFAULT_DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
                    },
                )
