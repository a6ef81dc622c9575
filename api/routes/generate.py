"""POST /generate: check the request and start a GenerationWorkflow (`start_generation`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from api.api_keys import presented_keys
from api.contract.task_view import status_url
from api.deps import (
    AdmissionDep,
    BaseUrlDep,
    ManifestsDep,
    OutputStoreDep,
    SettingsDep,
    TemporalDep,
)
from api.generations.idempotency import MAX_KEY_LENGTH
from api.generations.start import start_generation
from api.responses import error_responses
from api.schemas import GenerateAccepted, GenerateCreate

router = APIRouter(tags=["generate"])


@router.post(
    "/generate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GenerateAccepted,
    responses=error_responses(
        409,
        413,
        422,
        429,
        503,
        descriptions={
            409: "The Idempotency-Key was already used with a different body.",
            422: "Unknown workflow or bad parameters (or a bad Idempotency-Key), or a model file"
            " no GPU worker of the pool has (with the closest names); one entry per bad field.",
            429: "The workflow's pool already holds its maximum backlog (--max-backlog): nothing"
            " was queued. `Retry-After` says in how many seconds to try again; the entry's"
            " `ctx` names the pool, its backlog and its limit.",
        },
    ),
    summary="Start a generation",
)
async def generate(
    body: GenerateCreate,
    http_request: Request,
    response: Response,
    temporal: TemporalDep,
    manifests: ManifestsDep,
    base_url: BaseUrlDep,
    settings: SettingsDep,
    store: OutputStoreDep,
    admission: AdmissionDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Any unique string (e.g. a UUID) per intended generation: a repeat with"
            " the same key returns the same task_id and starts nothing; the same key with a"
            " different body is a 409. Remembered as long as Temporal keeps the finished task"
            " (the namespace's retention).",
            # What check_idempotency_key accepts, for the document only: the route checks it
            # itself, so a bad key is refused in this API's words (invalid_idempotency_key).
            json_schema_extra={
                "minLength": 1,
                "maxLength": MAX_KEY_LENGTH,
                "pattern": "^[\\x20-\\x7e]*[\\x21-\\x7e][\\x20-\\x7e]*$",
            },
        ),
    ] = None,
) -> GenerateAccepted:
    task_id = await start_generation(
        body,
        temporal,
        manifests,
        settings,
        base_url=base_url,
        idempotency_key=idempotency_key,
        key_scope=_key_scope(http_request),
        inventory=http_request.app.state.inventory,
        store=store,
        admission=admission,
        router=http_request.app.state.router,
    )
    return _accepted(response, base_url, task_id)


def _accepted(response: Response, base_url: str, task_id: str) -> GenerateAccepted:
    url = status_url(base_url, task_id)
    response.headers["Location"] = url
    return GenerateAccepted(task_id=task_id, status_url=url)


def _key_scope(request: Request) -> str:
    """Keys of different API key holders never meet; with keys off there is one scope."""
    keys = request.app.state.api_keys
    if not keys.enabled:
        return ""
    presented = presented_keys(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )
    return next((key for key in presented if keys.matches(key)), "")
