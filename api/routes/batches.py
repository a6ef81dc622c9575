"""Batches: many generations of one workflow in one request, each item an ordinary task."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from api.batches.reader import cancel_batch, read_batch, tasks_url
from api.batches.schemas import BatchAccepted, BatchCancelAnswer, BatchCreate, BatchPublic
from api.batches.submit import start_batch
from api.deps import (
    AdmissionDep,
    BaseUrlDep,
    ManifestsDep,
    OutputStoreDep,
    SettingsDep,
    TemporalDep,
)
from api.responses import error_responses

router = APIRouter(prefix="/batches", tags=["batches"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses=error_responses(
        413,
        422,
        429,
        503,
        descriptions={
            422: "Unknown workflow, too many items, or bad items (as POST /generate checks one,"
            " model files included): one entry per bad field, its"
            " `loc` naming the item (`items`, index) or the sweep value, `ctx.items` the items"
            " it is bad in. Nothing was started.",
        },
    ),
    summary="Start a batch: a list of parameter sets, or a sweep",
)
async def create_batch(
    body: BatchCreate,
    http_request: Request,
    response: Response,
    temporal: TemporalDep,
    manifests: ManifestsDep,
    base_url: BaseUrlDep,
    settings: SettingsDep,
    store: OutputStoreDep,
    admission: AdmissionDep,
) -> BatchAccepted:
    batch_id = await start_batch(
        body,
        temporal,
        manifests,
        settings,
        base_url=base_url,
        inventory=http_request.app.state.inventory,
        store=store,
        admission=admission,
    )
    url = f"{base_url}/batches/{batch_id}"
    response.headers["Location"] = url
    return BatchAccepted(
        batch_id=batch_id,
        size=body.size,
        status_url=url,
        tasks_url=tasks_url(base_url, batch_id),
    )


@router.get(
    "/{batch_id}",
    response_model=BatchPublic,
    responses=error_responses(404, descriptions={404: "No batch with this id."}),
    summary="Progress of a batch: items by status, and their task ids",
)
async def get_batch(
    batch_id: str,
    temporal: TemporalDep,
    base_url: BaseUrlDep,
    offset: Annotated[int, Query(ge=0, description="First item whose task id is listed.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Task ids listed at most.")] = 100,
) -> BatchPublic:
    return await read_batch(temporal, batch_id, base_url, offset=offset, limit=limit)


@router.post(
    "/{batch_id}/cancel",
    response_model=BatchCancelAnswer,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": BatchCancelAnswer, "description": "Nothing left to cancel."},
        **error_responses(404, descriptions={404: "No batch with this id."}),
    },
    summary="Cancel a batch: items not started never start, unfinished ones are cancelled",
)
async def cancel(
    batch_id: str,
    temporal: TemporalDep,
    response: Response,
    reason: Annotated[str | None, Query(max_length=500)] = None,
) -> BatchCancelAnswer:
    answer = await cancel_batch(temporal, batch_id, reason)
    if answer.cancel_requested == 0:
        response.status_code = status.HTTP_200_OK
    return answer
