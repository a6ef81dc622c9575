"""Liveness (/health, and /ping as the original service answered it: the process answers),
readiness: /ready/api (Temporal answers, so this API accepts jobs: what a load balancer asks) and
/ready (and workers poll, so jobs run: what an operator asks)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ManifestsDep, SettingsDep, TemporalDep
from api.schemas import ApiReadiness, Health, Pong, PoolReadiness, Readiness
from api.tasks.queues import queue_pollers
from manifests.definitions import DEFAULT_POOL
from temporal_workflows.names import CONTROL_TASK_QUEUE, pool_task_queue

router = APIRouter(tags=["health"])

_READY_TIMEOUT = 5.0


@router.get("/health", response_model=Health, summary="The API process is up")
async def health() -> Health:
    return Health()


@router.get("/ping", response_model=Pong, summary="The API process is up (the original's probe)")
async def ping() -> Pong:
    return Pong()


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _answer(answer: ApiReadiness) -> JSONResponse:
    answer.ready = not answer.reasons
    return JSONResponse(
        status_code=200 if answer.ready else 503, content=answer.model_dump(mode="json")
    )


@router.get(
    "/ready/api",
    response_model=ApiReadiness,
    responses={503: {"model": ApiReadiness, "description": "Temporal is not reachable."}},
    summary="Temporal reachable: this API accepts jobs, whether or not workers poll",
)
async def ready_api(temporal: TemporalDep) -> JSONResponse:
    # The probe for a load balancer or an orchestrator: jobs submitted while no worker polls
    # wait in Temporal and run when workers come back, so only Temporal decides.
    answer = ApiReadiness(ready=False, temporal_reachable=False)
    try:
        async with asyncio.timeout(_READY_TIMEOUT):
            await temporal.service_client.check_health(timeout=timedelta(seconds=_READY_TIMEOUT))
        answer.temporal_reachable = True
    except Exception as err:  # unreachable, timed out, or refused: all mean "not ready"
        answer.temporal_error = _error_text(err)
        answer.reasons.append("Temporal is not reachable")
    return _answer(answer)


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready; `reasons` says why."}},
    summary="Temporal reachable, a control worker and GPU workers polling",
)
async def ready(
    temporal: TemporalDep, manifests: ManifestsDep, settings: SettingsDep
) -> JSONResponse:
    answer = Readiness(ready=False, temporal_reachable=False)
    if settings.ready_pools is not None:
        pools = sorted(settings.ready_pools)
    else:
        snapshot = await manifests.snapshot()
        pools = sorted({m.pool for m in snapshot.workflows.values()} or {DEFAULT_POOL})
    try:
        async with asyncio.timeout(_READY_TIMEOUT):
            await temporal.service_client.check_health(timeout=timedelta(seconds=_READY_TIMEOUT))
            answer.temporal_reachable = True
            answer.control_pollers = await queue_pollers(
                temporal, CONTROL_TASK_QUEUE, activities=False
            )
            for pool in pools:
                queue = pool_task_queue(pool)
                answer.pools[pool] = PoolReadiness(
                    task_queue=queue, pollers=await queue_pollers(temporal, queue)
                )
    except Exception as err:  # unreachable, timed out, or refused: all mean "not ready"
        answer.temporal_error = _error_text(err)
        answer.reasons.append("Temporal is not reachable")
    if answer.temporal_reachable:
        if not answer.control_pollers:
            answer.reasons.append(f"no control worker polls {CONTROL_TASK_QUEUE}")
        for pool, info in answer.pools.items():
            if not info.pollers:
                answer.reasons.append(f"no GPU worker polls {info.task_queue} (pool '{pool}')")
    return _answer(answer)
