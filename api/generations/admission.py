"""Admission of new jobs at the API: `check_admission` refuses them with 429 and Retry-After when
their pool's GPU queue already holds its maximum backlog (activities/generation/admission.py says
how the backlog is read, and why it is approximate). POST /generate calls it; batches too."""

from __future__ import annotations

from typing import Any

from activities.generation.admission import AdmissionDecision, PoolAdmission
from api.errors import ApiError


class PoolFull(ApiError):
    """429: the pool has no room for the job now; `Retry-After` says when to try again."""

    status_code = 429
    error_type = "pool_full"

    def __init__(self, decision: AdmissionDecision) -> None:
        jobs = "the job" if decision.jobs == 1 else f"{decision.jobs} jobs"
        super().__init__(
            f"pool '{decision.pool}' is full: {decision.backlog} jobs wait for a GPU, at most "
            f"{decision.limit}; {jobs} not queued, retry in {decision.retry_after} s",
            loc=["body", "workflow_id"],
        )
        self.decision = decision

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.decision.retry_after)}

    def detail(self) -> Any:
        decision = self.decision
        entries = super().detail()
        entries[0]["ctx"] = {
            "pool": decision.pool,
            "backlog": decision.backlog,
            "max_backlog": decision.limit,
            "retry_after": decision.retry_after,
        }
        return entries


async def check_admission(admission: PoolAdmission | None, pool: str, jobs: int = 1) -> None:
    """Raise PoolFull unless `pool` takes `jobs` more jobs now (all or none); admitted jobs count
    against the pool from now on, so call it just before starting them. None: no limits."""
    if admission is None:
        return
    decision = await admission.admit(pool, jobs)
    if not decision.admitted:
        raise PoolFull(decision)
