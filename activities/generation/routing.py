"""`route_generation` (control worker, local activity): the GPU queue a job's execute activity
goes to, from the models its graph names and what the pool's GPU workers reported to their
PoolInventoryWorkflow (docs/routing.md), and again for a job its worker did not take within the
wait: the pool queue when another GPU idles, else the same worker. The API decides a job's first
try at submit with the same `Router` (no routing step in its history then). Never fails a job:
an inventory it cannot read means the pool queue."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client

from activities.workers.inventory import InventoryCache
from activities.workers.settings import RoutingSettings
from temporal_workflows.inventory import PoolInventory
from temporal_workflows.names import (
    ROUTE_ACTIVITY,
    pool_task_queue,
    worker_task_queue,
)
from temporal_workflows.payloads import RouteInput, RoutingDecision
from temporal_workflows.routing import Claims, ModelUse, after_wait, job_models, prefer_worker

logger = logging.getLogger(__name__)

# A burst of jobs shares one query: workers report a change of loaded models at once, so a
# fraction of a second old is fresh enough.
INVENTORY_FRESH_SECONDS = 0.5
# An inventory that cannot be read (no control worker runs its workflow, no GPU worker reported)
# is asked again only this much later: meanwhile jobs go to the pool queue without waiting.
_UNREADABLE_SECONDS = 10.0
# A model set sent to a worker stays its own this long after the last job of it was sent there;
# jobs naming it meanwhile follow (unless that worker is busy while another GPU idles).
_CLAIM_AGE = timedelta(seconds=30)


class Router:
    """Routing with one process's settings, its cached inventories and the model sets it sent to
    each worker lately (`Claims`): a backlog is routed before any GPU has loaded anything, so the
    jobs naming the same models follow the first of them rather than scatter. The API routes a
    job's first try at submit with one; the control worker's `route_generation` the others."""

    def __init__(
        self, settings: RoutingSettings | None = None, inventories: InventoryCache | None = None
    ) -> None:
        self.settings = settings or RoutingSettings()
        # The API gives its own cache, which its name checks share.
        self.inventories = inventories or InventoryCache(
            INVENTORY_FRESH_SECONDS, unreadable_ttl=_UNREADABLE_SECONDS
        )
        # pool -> {model set: (worker, when a job of it was last sent there)}
        self._claims: dict[str, dict[frozenset[ModelUse], tuple[str, datetime]]] = {}

    async def route(self, client: Client, request: RouteInput) -> RoutingDecision:
        """Where the job's next try goes (never raises: an unreadable inventory is the pool
        queue)."""
        pool_queue = pool_task_queue(request.pool)
        if self.settings.routing == "pool":
            return RoutingDecision(routing="cold", task_queue=pool_queue, reason="pool routing")
        inventory = await self.inventories.get(client, request.pool)
        waited = request.waited
        models = job_models(request.prompt, inventory) if inventory is not None else []
        if waited is not None and waited.worker is not None:
            preference = after_wait(
                inventory, waited.worker, waited.wait_seconds or 0.0, models, request.task_id
            )
            routing = waited.routing if preference.worker == waited.worker else preference.routing
        else:
            claims = self._live_claims(request.pool, inventory)
            preference = prefer_worker(inventory, models, request.task_id, claims)
            if preference.worker is not None and models:
                claim = frozenset(models)
                self._claims.setdefault(request.pool, {})[claim] = (
                    preference.worker,
                    datetime.now(UTC),
                )
            routing = preference.routing
        if preference.worker is None:
            return RoutingDecision(routing="cold", task_queue=pool_queue, reason=preference.reason)
        return RoutingDecision(
            routing=routing,
            task_queue=worker_task_queue(request.pool, preference.worker),
            worker=preference.worker,
            reason=preference.reason,
            wait_seconds=self.settings.affinity_wait_seconds,
        )

    def _live_claims(self, pool: str, inventory: PoolInventory | None) -> Claims:
        """The pool's claims younger than _CLAIM_AGE, of workers that still report."""
        claims = self._claims.get(pool, {})
        workers = set(inventory.reporting_workers()) if inventory is not None else set()
        oldest = datetime.now(UTC) - _CLAIM_AGE
        for models, (worker, at) in list(claims.items()):
            if at < oldest or worker not in workers:
                del claims[models]
        return dict(claims)


class RouteActivities:
    """`route_generation`, the control worker's routing step (a local activity)."""

    def __init__(self, routing: RoutingSettings | Router | None = None) -> None:
        self.router = routing if isinstance(routing, Router) else Router(routing)

    @activity.defn(name=ROUTE_ACTIVITY)
    async def route_generation(self, request: RouteInput) -> RoutingDecision:
        return await self.router.route(activity.client(), request)
