"""A GPU worker's model inventory: the choices its ComfyUI offers to each model loader input
(from /object_info) and the models it holds loaded (loaded_models.py), reported to the pool's
PoolInventoryWorkflow while the worker takes jobs.

A report goes out when ComfyUI becomes healthy (the whole /object_info, once), then every
`interval`: each loader class is read alone (`/object_info/<class>`, which scans only that
class's model folder, comfyui-protocol.md §2.8), and the report carries the choices when they
changed, else only their digest as a keep-alive. The worker withdraws when it stops taking jobs;
one that dies without a word expires after `EXPIRY_INTERVALS` intervals without a report.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from activities.comfyui.client import ComfyUIClient
from activities.comfyui.protocol import NodeInfo, combo_options
from activities.workers.loaded_models import LoadedModels
from temporal_workflows.inventory import (
    InventoryReport,
    InventoryWithdrawal,
    LoaderChoices,
    PoolInventory,
    inventory_digest,
)
from temporal_workflows.names import (
    INVENTORY_QUERY,
    POOL_INVENTORY_WORKFLOW,
    REPORT_INVENTORY_SIGNAL,
    WITHDRAW_INVENTORY_SIGNAL,
    inventory_workflow_id,
)

logger = logging.getLogger(__name__)

INVENTORY_INTERVAL = timedelta(seconds=60)
# A report counts this many intervals: one or two lost keep-alives never drop a live worker.
EXPIRY_INTERVALS = 3
_SIGNAL_TIMEOUT = timedelta(seconds=10)

# A loader input names a model file: `ckpt_name`, `lora_name`, `clip_name2`, `lora_1_name`,
# `model_name` (upscalers), ...; a loader's other combos (`weight_dtype`, `type`) do not match.
LOADER_INPUT = re.compile(r"\w+_name\d*")


def is_loader(info: NodeInfo) -> bool:
    """A model loader node: its category has a "loader(s)" part, as ComfyUI's own have
    ("loaders", "advanced/loaders", "loaders/video_models") and most custom packs do."""
    return any("loader" in part.lower() for part in str(info.get("category", "")).split("/"))


def loader_choices(object_info: dict[str, NodeInfo]) -> LoaderChoices:
    """{loader class: {loader input: choices}} of every COMBO loader input in /object_info."""
    found: LoaderChoices = {}
    for class_type, info in object_info.items():
        if not isinstance(info, dict) or not is_loader(info):
            continue
        inputs: dict[str, Any] = dict(info.get("input") or {})
        for group in ("required", "optional"):
            for input_name, spec in (inputs.get(group) or {}).items():
                if not LOADER_INPUT.fullmatch(input_name) or not isinstance(spec, list):
                    continue
                options = combo_options(spec)
                if options is not None:
                    names = sorted({o for o in options if isinstance(o, str)})
                    found.setdefault(class_type, {})[input_name] = names
    return found


class InventoryReporter:
    """Reports one worker's inventory to its pool's PoolInventoryWorkflow until cancelled."""

    def __init__(
        self,
        client: Client,
        comfy: ComfyUIClient,
        *,
        pool: str,
        worker: str,
        control_queue: str,
        interval: timedelta = INVENTORY_INTERVAL,
        loaded: LoadedModels | None = None,
    ) -> None:
        self.client = client
        self.comfy = comfy
        self.pool = pool
        self.worker = worker
        self.control_queue = control_queue
        self.interval = interval
        self.loaders: LoaderChoices | None = None  # as last read from ComfyUI
        self._sent_digest: str | None = None  # what the workflow holds for us, as far as we know
        self._chain: str | None = None  # first run id of the workflow we reported to
        self._poke = asyncio.Event()
        self._read_due = False  # refresh_soon: the next report reads the choices again
        # Which models ComfyUI holds loaded; each change is reported at once, without a read.
        self.loaded = loaded or LoadedModels()
        self.loaded.changed = self.report_loaded_soon
        # Whether the GPU holds no job (set_idle); reported at once when it changes.
        self.idle: bool | None = None

    def refresh_soon(self) -> None:
        """Read the choices again now rather than at the next interval (e.g. after a download
        into a model folder)."""
        self._read_due = True
        self._poke.set()

    def report_loaded_soon(self) -> None:
        """Report the loaded models now (routing reads them), with the choices last read."""
        self._poke.set()

    def set_idle(self, idle: bool) -> None:
        """The GPU became idle (no job for IDLE_AFTER_SECONDS) or busy again: routing reads it."""
        if idle != self.idle:
            self.idle = idle
            self._poke.set()

    async def run(self) -> None:
        """Report now and every `interval`; never raises but CancelledError (a ComfyUI or
        Temporal hiccup is logged and tried again at the next interval)."""
        read = True
        while True:
            try:
                if read or self.loaders is None:
                    self.loaders = await self._read(self.loaders)
                await self._report(self.loaders)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the worker keeps serving jobs whatever happens here
                logger.warning("%s: inventory not reported: %r", self.worker, exc)
                self._sent_digest = None  # send it whole next time
            timed_out = False
            try:
                await asyncio.wait_for(self._poke.wait(), self.interval.total_seconds())
            except TimeoutError:
                timed_out = True
            self._poke.clear()
            read, self._read_due = timed_out or self._read_due, False

    async def withdraw(self, reason: str) -> None:
        """Tell the pool this worker takes no more jobs; best effort, bounded in time."""
        handle = self.client.get_workflow_handle(inventory_workflow_id(self.pool))
        try:
            await handle.signal(
                WITHDRAW_INVENTORY_SIGNAL,
                InventoryWithdrawal(worker=self.worker, reason=reason),
                rpc_timeout=_SIGNAL_TIMEOUT,
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # no workflow: nothing to withdraw from
                logger.warning("%s: inventory not withdrawn (it expires): %s", self.worker, err)
        self._sent_digest = None

    async def _read(self, known: LoaderChoices | None) -> LoaderChoices:
        if known is None:
            return loader_choices(await self.comfy.object_info())
        current: LoaderChoices = {}
        for class_type in known:
            current.update(loader_choices(await self.comfy.object_info(class_type)))
        return current

    async def _report(self, loaders: LoaderChoices) -> None:
        digest = inventory_digest(loaders)
        whole = digest != self._sent_digest
        chain = await self._signal(loaders if whole else None, digest)
        if not whole and chain is not None and chain != self._chain:
            # The keep-alive started a new workflow (the old one was terminated), which has
            # never seen these choices.
            chain = await self._signal(loaders, digest)
        if whole:
            logger.info(
                "%s: reported %d loader input(s) to %s",
                self.worker,
                sum(len(inputs) for inputs in loaders.values()),
                inventory_workflow_id(self.pool),
            )
        self._chain = chain or self._chain
        self._sent_digest = digest

    async def _signal(self, loaders: LoaderChoices | None, digest: str) -> str | None:
        """Signal-with-start; returns the first run id of the workflow's chain when known."""
        report = InventoryReport(
            worker=self.worker,
            digest=digest,
            loaders=loaders,
            valid_for_seconds=self.interval.total_seconds() * EXPIRY_INTERVALS,
            loaded=self.loaded.loaded(),
            idle=self.idle,
        )
        handle = await self.client.start_workflow(
            POOL_INVENTORY_WORKFLOW,
            PoolInventory(pool=self.pool),
            id=inventory_workflow_id(self.pool),
            task_queue=self.control_queue,
            start_signal=REPORT_INVENTORY_SIGNAL,
            start_signal_args=[report],
            rpc_timeout=_SIGNAL_TIMEOUT,
        )
        return handle.first_execution_run_id


# The query is answered by a control worker in milliseconds; without one, give up soon (names go
# unchecked, jobs to the pool queue).
INVENTORY_QUERY_TIMEOUT = timedelta(seconds=2)


async def query_inventory(client: Client, pool: str) -> PoolInventory | None:
    """The pool's inventory from its PoolInventoryWorkflow; None when no worker ever reported
    (no such workflow) or it cannot be read now (logged)."""
    handle = client.get_workflow_handle(inventory_workflow_id(pool))
    try:
        inventory: PoolInventory = await handle.query(
            INVENTORY_QUERY, result_type=PoolInventory, rpc_timeout=INVENTORY_QUERY_TIMEOUT
        )
        return inventory
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            logger.warning("inventory of pool '%s' not readable: %s", pool, err)
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as err:
        logger.warning("inventory of pool '%s' not readable: %s", pool, err)
    return None


class InventoryCache:
    """Per-pool PoolInventory for `ttl` seconds (None, unknown, for `unreadable_ttl`); one query
    at a time per pool, so concurrent requests and routing decisions share it."""

    def __init__(self, ttl: float, unreadable_ttl: float | None = None) -> None:
        self.ttl = ttl
        self.unreadable_ttl = ttl if unreadable_ttl is None else unreadable_ttl
        self._entries: dict[str, tuple[float, PoolInventory | None]] = {}  # pool: (until, ...)
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, client: Client, pool: str) -> PoolInventory | None:
        async with self._locks.setdefault(pool, asyncio.Lock()):
            cached = self._entries.get(pool)
            if cached is not None and time.monotonic() < cached[0]:
                return cached[1]
            inventory = await query_inventory(client, pool)
            ttl = self.ttl if inventory is not None else self.unreadable_ttl
            self._entries[pool] = (time.monotonic() + ttl, inventory)
            return inventory
