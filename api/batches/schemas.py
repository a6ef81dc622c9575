"""Request and response schemas of /batches: many generations of one workflow in one request."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas import GenerateCreateOptions
from temporal_workflows.batch_payloads import batch_size

BatchState = Literal["starting", "started", "cancelled", "failed"]


class BatchCreate(BaseModel):
    """Body of POST /batches: `items` (one params object per item) or `sweep` (every combination
    of its lists' values), each merged over the shared `params`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "workflow_id": "smoke_image",
                    "params": {"height": 64},
                    "items": [{"width": 64}, {"width": 128}],
                },
                {
                    "workflow_id": "flux_wavespeed",
                    "params": {"prompt": "a lighthouse at dawn"},
                    "sweep": {"seed": [1, 2, 3], "steps": [10, 20]},
                },
            ]
        },
    )

    workflow_id: str = Field(min_length=1, description="A workflow listed by GET /workflows.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters every item shares; an item's own win."
    )
    items: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, description="One params object per item, in order."
    )
    sweep: dict[str, list[Any]] | None = Field(
        default=None,
        min_length=1,
        description="Parameter name -> the values to try: one item per combination (the"
        " product, the last list varying fastest).",
    )
    options: GenerateCreateOptions | None = Field(
        default=None,
        description="As POST /generate's, for every item; `priority` defaults to 4 for batch"
        " items, one below a single job's default, so jobs submitted alone go first.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> BatchCreate:
        if (self.items is None) == (self.sweep is None):
            raise ValueError("give exactly one of `items` and `sweep`")
        for name, values in (self.sweep or {}).items():
            if not values:
                raise ValueError(f"sweep.{name} has no values")
        return self

    @property
    def size(self) -> int:
        return batch_size(self.items, self.sweep)


class BatchAccepted(BaseModel):
    """Answer of POST /batches: the items start in the background, in order."""

    batch_id: str
    size: int = Field(description="Number of items; item i is task `<batch_id>-<i>`.")
    status_url: str
    tasks_url: str = Field(description="GET /tasks filtered on this batch.")


class BatchCounts(BaseModel):
    """Items by status, as GET /tasks lists them: PENDING is every item not finished yet
    (waiting for a GPU or running)."""

    PENDING: int = 0
    SUCCESS: int = 0
    FAILURE: int = 0
    CANCELLED: int = 0


class BatchPublic(BaseModel):
    """Answer of GET /batches/{id}."""

    batch_id: str
    workflow_id: str
    size: int
    state: BatchState = Field(
        description="starting: items are being started; started: all are; cancelled: the batch"
        " was cancelled (no further item starts); failed: Temporal refused to start an item"
        " (`error` says why)."
    )
    started: int = Field(description="Items started so far (as Temporal lists them).")
    counts: BatchCounts
    finished: bool = Field(description="Every started item has ended and none is left to start.")
    created_at: datetime | None
    error: str | None = None
    task_ids: list[str] = Field(description="Task ids of items offset .. offset+limit-1.")
    next_offset: int | None = Field(description="Pass as `offset` for the next task ids.")
    tasks_url: str


class BatchCancelAnswer(BaseModel):
    """Answer of POST /batches/{id}/cancel."""

    batch_id: str
    cancel_requested: int = Field(description="Items asked to cancel (they were not finished).")
    already_finished: int = Field(description="Items that had ended; left as they were.")
    not_started: int = Field(description="Items that will now never start.")
    message: str
