"""Payloads of BatchWorkflow and its `start_batch_items` activity. A batch travels compact (the
common params, then each item's params or a sweep) and is expanded item by item where the items
are started, so a sweep of 1,000 seeds over a long prompt stays one small payload."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from temporal_workflows.payloads import GenerationOptions


def batch_size(items: list[dict[str, Any]] | None, sweep: dict[str, list[Any]] | None) -> int:
    """How many items a batch has: its item list's length, else the product of its sweep's."""
    if items is not None:
        return len(items)
    return math.prod(len(values) for values in (sweep or {}).values())


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class BatchRequest(_Payload):
    """Input of BatchWorkflow: the items, checked and staged by the API, and their options.

    Exactly one of `items` and `sweep` is set. Item i's params are `params` updated with
    `items[i]`, or with the i-th combination of the sweep's values (the product of its lists in
    the order given, the last list varying fastest, as itertools.product).
    """

    workflow_id: str
    pool: str
    params: dict[str, Any] = Field(default_factory=dict, description="Shared by every item.")
    items: list[dict[str, Any]] | None = None
    sweep: dict[str, list[Any]] | None = None
    options: GenerationOptions = Field(default_factory=GenerationOptions)

    @property
    def size(self) -> int:
        return batch_size(self.items, self.sweep)

    def item_params(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.size:
            raise IndexError(f"item {index} of a batch of {self.size}")
        if self.items is not None:
            return {**self.params, **self.items[index]}
        chosen: dict[str, Any] = {}
        for name, values in reversed(list((self.sweep or {}).items())):
            index, position = divmod(index, len(values))
            chosen[name] = values[position]
        return {**self.params, **dict(reversed(list(chosen.items())))}


class StartBatchItemsInput(_Payload):
    """Input of `start_batch_items`: start every item of `batch` not started yet."""

    batch_id: str
    batch: BatchRequest
    task_queue: str = Field(description="The control queue the items run on.")


class BatchItemsStarted(_Payload):
    """Output of `start_batch_items` and of BatchWorkflow."""

    total: int
    started: int = Field(description="Items this run of the activity started.")
    already_started: int = Field(
        default=0, description="Items found started by an earlier attempt (a retry resumes)."
    )


class BatchSummary(_Payload):
    """A BatchWorkflow's memo (BATCH_MEMO), written at its start: what GET /batches/{id} shows
    without reading the batch's input."""

    workflow_id: str
    size: int
