"""PoolInventoryWorkflow: a pool's long-running record of which model files each GPU worker's
ComfyUI offers and which models it holds loaded. Workers signal it (report, withdraw); the API
and routing query it.

Hosts share nothing but Temporal (DESIGN.md §6), so this is where the fleet's inventory lives:
no extra database, no call from the API to ComfyUI. A worker that stops reporting (a crash, a
lost host) is dropped once its report's validity runs out. History is bounded by continuing as
new with the state as input.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from temporal_workflows.inventory import (
        InventoryReport,
        InventoryWithdrawal,
        PoolInventory,
        WorkerInventory,
    )
    from temporal_workflows.names import (
        INVENTORY_QUERY,
        POOL_INVENTORY_WORKFLOW,
        REPORT_INVENTORY_SIGNAL,
        WITHDRAW_INVENTORY_SIGNAL,
    )

# Continue as new past this many events (or when the server suggests it): a keep-alive adds
# about four, so a run lasts hours even with many workers, and replaying one stays cheap.
MAX_HISTORY_EVENTS = 4000


@workflow.defn(name=POOL_INVENTORY_WORKFLOW)
class PoolInventoryWorkflow:
    @workflow.init
    def __init__(self, state: PoolInventory) -> None:
        self._state = state.model_copy(deep=True)
        # When the loop's expiry timer fires (None: no timer, nobody to expire).
        self._timer_at: datetime | None = None
        self._wake = False

    @workflow.run
    async def run(self, state: PoolInventory) -> None:
        while True:
            self._expire(workflow.now())
            if self._history_full():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
            self._wake = False
            self._timer_at = min((w.expires_at for w in self._state.workers.values()), default=None)
            timeout = (
                max(self._timer_at - workflow.now(), timedelta(seconds=1))
                if self._timer_at is not None
                else None
            )
            try:
                await workflow.wait_condition(
                    lambda: self._wake or self._history_full(), timeout=timeout
                )
            except TimeoutError:
                pass  # an entry's time ran out: expired at the top of the loop

    @workflow.signal(name=REPORT_INVENTORY_SIGNAL)
    def report(self, report: InventoryReport) -> None:
        now = workflow.now()
        if report.loaders is not None:
            self._state.inventories[report.digest] = report.loaders
        expires_at = now + timedelta(seconds=report.valid_for_seconds)
        self._state.workers[report.worker] = WorkerInventory(
            digest=report.digest,
            reported_at=now,
            expires_at=expires_at,
            loaded=report.loaded or {},
            idle=report.idle,
        )
        self._forget_unused_inventories()
        # Keep-alives only push expiry later; the loop needs to wake only for an earlier one.
        if self._timer_at is None or expires_at < self._timer_at:
            self._wake = True

    @workflow.signal(name=WITHDRAW_INVENTORY_SIGNAL)
    def withdraw(self, withdrawal: InventoryWithdrawal) -> None:
        if self._state.workers.pop(withdrawal.worker, None) is not None:
            workflow.logger.info(
                "worker %s withdrew its inventory: %s", withdrawal.worker, withdrawal.reason
            )
            self._forget_unused_inventories()

    @workflow.query(name=INVENTORY_QUERY)
    def inventory(self) -> PoolInventory:
        return self._state

    def _expire(self, now: datetime) -> None:
        expired = [name for name, w in self._state.workers.items() if w.expires_at <= now]
        for name in expired:
            workflow.logger.info("worker %s stopped reporting; its inventory expired", name)
            del self._state.workers[name]
        if expired:
            self._forget_unused_inventories()

    def _forget_unused_inventories(self) -> None:
        used = {w.digest for w in self._state.workers.values()}
        for digest in [d for d in self._state.inventories if d not in used]:
            del self._state.inventories[digest]

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= MAX_HISTORY_EVENTS
        )
