"""GenerationWorkflow: prepare (render) a ComfyUI graph, run it on a GPU worker, return its outputs.

Deterministic orchestration only. Activities are called by name, so this module imports nothing
with I/O; the payload models pass through the sandbox.

Two budgets (docs/temporal.md, "Timeouts and retries"): a fault of the infrastructure (a lost
worker, ComfyUI down, a store outage) is retried by Temporal in place, as attempts of one execute
activity, for as long as the manifest's `deadline` allows (its schedule-to-close); that adds no
history, however often the fleet churns. Every other failure comes back here: the job's own
retryable failures get a new execute activity within the manifest's `retries`, a type with a
`limit` (the first out-of-memory) one within that limit. Each new activity has its own id
(`execute-2`, ...), which `set_priority` addresses, and its own `try_number`, which with the
attempt makes the ComfyUI prompt id; a cancel reaches whichever activity or backoff is current.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from temporal_workflows.failures import (
        NON_RETRYABLE_ERROR_TYPES,
        NOT_RETRIED_IN_PLACE,
        ErrorType,
        Fault,
        decode_generation_error,
        failure_kind,
        generation_error,
    )
    from temporal_workflows.names import (
        ADMISSION_ACTIVITY,
        ADMISSION_MEMO,
        ADMISSION_PATCH,
        CANCEL_SIGNAL,
        EXECUTE_ACTIVITY,
        EXECUTE_ACTIVITY_ID,
        GENERATION_WORKFLOW,
        NOTIFY_ACTIVITY,
        PREPARE_ACTIVITY,
        REQUEST_CANCEL_ACTIVITY,
        RETRY_COUNTS_MEMO,
        ROUTE_ACTIVITY,
        ROUTING_MEMO,
        SA_POOL,
        SA_WORKER,
        SA_WORKFLOW,
        SCHEDULE_MEMO,
        SET_PRIORITY_SIGNAL,
        STATUS_QUERY,
        UPDATE_PRIORITY_ACTIVITY,
        WEBHOOK_MEMO,
        execute_activity_id,
        pool_task_queue,
        worker_task_queue,
    )
    from temporal_workflows.payloads import (
        AdmissionCheck,
        AdmissionOutcome,
        CancelRequest,
        ExecuteInput,
        ExecuteResult,
        GenerationError,
        GenerationRequest,
        GenerationResult,
        GenerationStatus,
        InfrastructureFault,
        NotifyInput,
        NotifyResult,
        PreparedPrompt,
        PrepareInput,
        PriorityChange,
        RetryCounts,
        RouteInput,
        RoutingDecision,
        WebhookDelivery,
    )

# A GPU worker heartbeats every ~0.5 s (its max_heartbeat_throttle_interval), with a ticker that
# runs even while ComfyUI is silent. Missing heartbeats for this long means the worker (or its
# host) died, and the attempt is retried on another GPU.
EXECUTE_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
# Outputs are copied from ComfyUI into the output store after the run; give that its own margin.
STORING_MARGIN = timedelta(seconds=60)
PREPARE_TIMEOUT = timedelta(seconds=30)
# Backoff between attempts of the GPU step: Temporal's in place, and the workflow's own retries.
EXECUTE_RETRY_INITIAL = timedelta(seconds=1)
EXECUTE_RETRY_MAXIMUM = timedelta(seconds=30)
# Workflows that reach the GPU step with this patch keep two retry budgets (module docstring);
# older histories replay the single Temporal retry policy of `retries` + 1 attempts.
TWO_BUDGETS_PATCH = "two-retry-budgets"
ADMISSION_TIMEOUT = timedelta(seconds=10)
# Workflows with this patch route each execute activity (docs/routing.md): a local activity picks
# the GPU worker holding the job's models, whose own queue gets the activity with a
# schedule-to-start limit; past it, the pool queue. Older histories replay the plain pool queue.
AFFINITY_PATCH = "model-affinity"
ROUTE_TIMEOUT = timedelta(seconds=10)

# Webhooks: one POST may take this long; Temporal retries it with backoff (1 s, 2 s, 4 s, ... at
# most an hour apart) for up to a day, on whichever control worker polls, across restarts of
# workers and of the server. The activity marks a receiver's 4xx (except 408/429) non-retryable.
NOTIFY_START_TO_CLOSE = timedelta(seconds=30)
NOTIFY_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(hours=1),
    maximum_attempts=40,
)
NOTIFY_SCHEDULE_TO_CLOSE = timedelta(hours=24)
# Delivery ids: derived from the run id, so every retry of one delivery carries the same id.
_DELIVERY_ID_NAMESPACE = uuid.UUID("b0d6a3e2-6c1e-4f51-9a57-3f2f4c7d9e01")


@workflow.defn(name=GENERATION_WORKFLOW)
class GenerationWorkflow:
    """One generation: the task id is this workflow's id."""

    @workflow.init
    def __init__(self, request: GenerationRequest) -> None:
        self._status = GenerationStatus(
            phase="queued",
            workflow_id=request.workflow_id,
            submitted_at=workflow.info().start_time,
        )
        self._cancel_reason: str | None = None
        self._priority = request.options.priority
        self._status.priority = request.options.priority
        self._execute_scheduled = False
        self._execute_activity_id = EXECUTE_ACTIVITY_ID
        self._done_details = ""
        if request.options.callback_url:
            self._status.webhook = WebhookDelivery(
                url=request.options.callback_url, delivery_id=_delivery_id(workflow.info())
            )

    @workflow.run
    async def run(self, request: GenerationRequest) -> GenerationResult:
        try:
            result = await self._generate(request)
        except asyncio.CancelledError:
            self._status.cancel_reason = (
                self._cancel_reason or workflow.cancellation_reason() or None
            )
            self._finish("CANCELLED", self._status.cancel_reason)
            if self._status.webhook is not None:
                self._status.outcome = "CANCELLED"
                # A cancel request reaches the workflow once (temporal-notes.md §3c); the shield
                # keeps the delivery itself out of cancellation, then the workflow still closes
                # as Canceled.
                await asyncio.shield(asyncio.ensure_future(self._notify(request)))
            raise
        except ApplicationError as err:
            self._status.error = decode_generation_error(err)
            error = self._status.error
            self._finish("FAILURE", f"{error.type}: {error.message}" if error else err.message)
            if self._status.webhook is not None:
                self._status.outcome = "FAILURE"
                await self._notify(request)
            raise
        # Only requests with a callback_url take this step: histories without one replay unchanged.
        if self._status.webhook is not None:
            self._status.outcome = "SUCCESS"
            self._status.result = result
            result.webhook = await self._notify(request)
        return result

    async def _notify(self, request: GenerationRequest) -> WebhookDelivery:
        """POST the outcome to the callback URL (the `notify` activity, retried by Temporal), and
        record how that went: in the status query while it runs, in the memo once it ended."""
        delivery = self._status.webhook
        assert delivery is not None and self._status.outcome is not None
        self._status.phase = "notifying"
        workflow.set_current_details(
            f"**notifying** `{delivery.url}` ({self._status.outcome.lower()})"
        )
        info = workflow.info()
        try:
            sent = await workflow.execute_activity(
                NOTIFY_ACTIVITY,
                NotifyInput(
                    task_id=info.workflow_id,
                    workflow_id=request.workflow_id,
                    url=delivery.url,
                    delivery_id=delivery.delivery_id,
                    status=self._status.outcome,
                    result=self._status.result,
                    error=self._status.error,
                    cancel_reason=self._status.cancel_reason,
                    public_url=request.options.public_url,
                ),
                result_type=NotifyResult,
                # The control queue this workflow runs on: notify is a cheap network call.
                task_queue=info.task_queue,
                start_to_close_timeout=NOTIFY_START_TO_CLOSE,
                schedule_to_close_timeout=NOTIFY_SCHEDULE_TO_CLOSE,
                retry_policy=NOTIFY_RETRY_POLICY,
                summary=f"webhook {delivery.url}",
            )
        except ActivityError as err:
            delivery.status = "failed"
            delivery.attempts, delivery.status_code, delivery.last_error = _notify_failure(err)
        else:
            delivery.status = "delivered"
            delivery.attempts = sent.attempt
            delivery.status_code = sent.status_code
            delivery.delivered_at = sent.delivered_at
            delivery.last_error = None
        workflow.upsert_memo({WEBHOOK_MEMO: delivery.model_dump(mode="json")})
        self._status.phase = "done"
        workflow.set_current_details(f"{self._done_details}\n\nwebhook {delivery.status}")
        return delivery

    async def _generate(self, request: GenerationRequest) -> GenerationResult:
        # Decided first, before any command: replay then meets the patch marker where it was
        # recorded, not after the local activity's marker. A request rendered at submit was
        # started by code that has the two budgets, so it needs no patch marker (nor the upsert
        # of TemporalChangeVersion that comes with one: two history events per generation).
        two_budgets = request.prepared is not None or workflow.patched(TWO_BUDGETS_PATCH)
        # A schedule's run asks whether its pool takes one more job (POST /generate asked before
        # it started the workflow); only runs of schedules take this step (so only they carry the
        # marker), and only those recorded with the patch, so older histories replay unchanged.
        admission = workflow.memo_value(SCHEDULE_MEMO, None) is not None and workflow.patched(
            ADMISSION_PATCH
        )
        # Starts that know routing say whether to route, and need no patch marker (nor its
        # TemporalChangeVersion upsert); older ones replay without routing.
        affinity = (
            request.routed
            if request.routed is not None
            else two_budgets and workflow.patched(AFFINITY_PATCH)
        )
        task_id = workflow.info().workflow_id
        started = workflow.now()
        self._status.started_at = started
        if request.prepared is not None:
            # Rendered by the API at submit, which also set the search attributes at start: the
            # GPU step is this workflow task's only command. The input selects this path, so
            # histories started without `prepared` replay on the other one.
            prepared = request.prepared
        else:
            self._status.phase = "rendering"
            workflow.set_current_details(f"**rendering** `{request.workflow_id}`")
            prepared = await self._prepare(task_id, request)
        self._status.params = prepared.params
        if admission:
            await self._admit(task_id, prepared.pool)
        prepared_at = workflow.now()

        queue = (
            worker_task_queue(prepared.pool, request.options.worker)
            if request.options.worker
            else pool_task_queue(prepared.pool)
        )
        if request.prepared is None:
            attributes = [
                SA_WORKFLOW.value_set(prepared.workflow_id),
                SA_POOL.value_set(prepared.pool),
            ]
            if request.options.worker:
                attributes.append(SA_WORKER.value_set(request.options.worker))
            workflow.upsert_search_attributes(attributes)

        self._status.phase = "running"
        self._status.attempt = 1
        self._status.task_queue = queue
        self._status.worker = request.options.worker
        workflow.set_current_details(f"**running** `{prepared.workflow_id}` on `{queue}`")

        if affinity and request.options.worker:
            self._set_routing(
                RoutingDecision(
                    routing="pinned",
                    task_queue=queue,
                    worker=request.options.worker,
                    reason="the request named this worker",
                ),
                prepared,
            )
        if two_budgets:
            route = affinity and not request.options.worker
            first = request.routing if route else None
            result = await self._execute_within_budgets(task_id, prepared, queue, route, first)
            attempts, infrastructure_retries = self._status.attempt, result.attempt - 1
            infrastructure_retries += self._status.infrastructure_retries
        else:
            result = await self._execute_single_policy(task_id, prepared, queue)
            attempts, infrastructure_retries = result.attempt, 0

        finished = workflow.now()
        self._status.attempt = attempts
        self._status.infrastructure_retries = infrastructure_retries
        self._status.worker = result.worker
        workflow.upsert_search_attributes([SA_WORKER.value_set(result.worker)])
        retried = (
            f" ({infrastructure_retries} infrastructure retries)" if infrastructure_retries else ""
        )
        routed = f" ({self._status.routing.routing})" if self._status.routing else ""
        self._finish("SUCCESS", f"on `{result.worker}`{routed}, attempt {attempts}{retried}")
        timings = {
            "prepare_seconds": (prepared_at - started).total_seconds(),
            "execute_seconds": (finished - prepared_at).total_seconds(),
            "total_seconds": (finished - workflow.info().start_time).total_seconds(),
        }
        if result.comfy_execution_seconds is not None:
            timings["comfy_execution_seconds"] = result.comfy_execution_seconds
            timings["execution_seconds"] = result.comfy_execution_seconds
        # Absent from results recorded before the GPU worker measured it.
        if result.queue_wait_seconds is not None:
            timings["queue_wait_seconds"] = result.queue_wait_seconds
        return GenerationResult(
            task_id=task_id,
            workflow_id=prepared.workflow_id,
            outputs=result.outputs,
            params=prepared.params,
            revision=prepared.revision,
            worker=result.worker,
            attempts=attempts,
            infrastructure_retries=infrastructure_retries,
            timings=timings,
            node_timings=result.node_timings,
            routing=self._status.routing,
        )

    async def _execute_single_policy(
        self, task_id: str, prepared: PreparedPrompt, queue: str
    ) -> ExecuteResult:
        """The GPU step of workflows started before the two budgets: one execute activity that
        Temporal retries for any retryable failure, `retries` + 1 attempts in all."""
        execute_timeout = timedelta(seconds=prepared.timeout_seconds)
        handle = workflow.start_activity(
            EXECUTE_ACTIVITY,
            _execute_input(task_id, prepared, 1),
            result_type=ExecuteResult,
            task_queue=queue,
            # No schedule-to-start limit: a job waits for a GPU as long as it takes, on the pool
            # queue and on a pinned worker's own queue alike (cancel it to give up).
            # A prefetched prompt may wait one whole job in ComfyUI's queue before its own run.
            start_to_close_timeout=execute_timeout * 2 + STORING_MARGIN,
            heartbeat_timeout=EXECUTE_HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(seconds=30),
                maximum_attempts=prepared.max_attempts,
                non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
            ),
            # "Cancelled" then means ComfyUI has really dropped or interrupted the prompt.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"{prepared.workflow_id} on {queue}",
            priority=(
                Priority(priority_key=self._priority)
                if self._priority is not None
                else Priority.default
            ),
            activity_id=EXECUTE_ACTIVITY_ID,
        )
        self._execute_scheduled = True
        try:
            result: ExecuteResult = await handle
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            raise _generation_failure(err, prepared) from None
        return result

    async def _execute_within_budgets(
        self,
        task_id: str,
        prepared: PreparedPrompt,
        queue: str,
        route: bool = False,
        first: RoutingDecision | None = None,
    ) -> ExecuteResult:
        """The GPU step: execute activities until one succeeds or a failure is final. Keeps the
        job's try (`attempt`) and the infrastructure retries of finished activities in the status;
        the result's `attempt` - 1 are those of the activity that succeeded.

        With `route`, each try is routed first; one its preferred worker did not take within the
        wait is routed again, as the same try: routing spends neither budget. `first`, the
        first try's routing decided at submit (and already in the memo), spares its routing
        step."""
        status = self._status
        deadline = (
            workflow.info().start_time + timedelta(seconds=prepared.deadline_seconds)
            if prepared.deadline_seconds is not None
            else None
        )
        limited: dict[str, int] = {}  # retries made so far of each type that has a limit
        try_number = 0
        while True:
            try_number += 1
            left = deadline - workflow.now() if deadline is not None else None
            if left is not None and left <= timedelta(0):
                raise _deadline_failure(prepared, status.last_infrastructure_fault)
            self._execute_activity_id = execute_activity_id(try_number)
            if try_number > 1:
                counts = RetryCounts(
                    attempts=status.attempt,
                    infrastructure_retries=status.infrastructure_retries,
                    last_infrastructure_fault=status.last_infrastructure_fault,
                )
                workflow.upsert_memo({RETRY_COUNTS_MEMO: counts.model_dump(mode="json")})
            routing: RoutingDecision | None = None
            if first is not None and try_number == 1:
                routing = first
                self._set_routing(routing, prepared, memo=False)
            elif route:
                routing = await self._route(task_id, prepared)
            while True:
                handle = self._start_execute(task_id, prepared, queue, try_number, left, routing)
                try:
                    return await handle
                except ActivityError as err:
                    if is_cancelled_exception(err):
                        raise asyncio.CancelledError() from err
                    failure = err
                if routing is None or routing.wait_seconds is None or not _not_taken(failure):
                    break
                # Not taken within the wait: the pool queue if another GPU idles, else the
                # same worker again.
                routing = await self._route(task_id, prepared, waited=routing)
                left = deadline - workflow.now() if deadline is not None else None
                if left is not None and left <= timedelta(0):
                    raise _deadline_failure(prepared, status.last_infrastructure_fault)
            if failure.retry_state == RetryState.TIMEOUT or _is_deadline(failure):
                last = _last_fault_before_deadline(failure) or status.last_infrastructure_fault
                raise _deadline_failure(prepared, last)
            error = _decoded(failure, prepared)
            # The attempts Temporal made of this activity before it failed were infrastructure
            # faults retried in place.
            status.infrastructure_retries += max((error.attempt or 1) - 1, 0)
            kind = failure_kind(error.type)
            if not error.retryable:
                raise self._final_failure(error, prepared)
            if kind.limit is not None:
                limited[error.type] = limited.get(error.type, 0) + 1
                if limited[error.type] > kind.limit:
                    raise self._final_failure(error, prepared)
            if kind.fault == Fault.INFRASTRUCTURE:
                status.infrastructure_retries += 1
                status.last_infrastructure_fault = InfrastructureFault(
                    type=error.type, message=error.message, at=workflow.now()
                )
            elif status.attempt < prepared.max_attempts:
                status.attempt += 1
            else:
                error.message = f"{error.message} (gave up after {status.attempt} attempts)"
                raise self._final_failure(error, prepared)
            # A workflow timer: cancel and set_priority still reach the job while it backs off.
            await workflow.sleep(_backoff(try_number))

    def _start_execute(
        self,
        task_id: str,
        prepared: PreparedPrompt,
        queue: str,
        try_number: int,
        left: timedelta | None,
        routing: RoutingDecision | None = None,
    ) -> workflow.ActivityHandle[ExecuteResult]:
        # A prefetched prompt may wait one whole job in ComfyUI's queue before its own run.
        start_to_close = timedelta(seconds=prepared.timeout_seconds) * 2 + STORING_MARGIN
        summary = f"{prepared.workflow_id} on {queue}"
        schedule_to_start: timedelta | None = None
        if routing is not None:
            self._set_routing(routing, prepared)
            queue = routing.task_queue
            summary = f"{prepared.workflow_id} on {queue} ({routing.routing}: {routing.reason})"
            if routing.wait_seconds is not None:
                # Past it the job goes to the pool queue: a GPU never idles longer while it waits.
                schedule_to_start = timedelta(seconds=routing.wait_seconds)
                if left is not None:
                    schedule_to_start = min(schedule_to_start, left)
        handle = workflow.start_activity(
            EXECUTE_ACTIVITY,
            _execute_input(task_id, prepared, try_number),
            result_type=ExecuteResult,
            task_queue=queue,
            # The deadline bounds waiting for a GPU and every retry in place; there is no
            # schedule-to-start limit of its own (cancel to give up sooner), but for a job routed
            # to one worker's queue.
            schedule_to_close_timeout=left,
            schedule_to_start_timeout=schedule_to_start,
            start_to_close_timeout=min(start_to_close, left) if left else start_to_close,
            heartbeat_timeout=EXECUTE_HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(
                initial_interval=EXECUTE_RETRY_INITIAL,
                maximum_interval=EXECUTE_RETRY_MAXIMUM,
                maximum_attempts=0,  # until the schedule-to-close (the deadline)
                non_retryable_error_types=NOT_RETRIED_IN_PLACE,
            ),
            # "Cancelled" then means ComfyUI has really dropped or interrupted the prompt.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=summary + (f" (try {try_number})" if try_number > 1 else ""),
            priority=(
                Priority(priority_key=self._priority)
                if self._priority is not None
                else Priority.default
            ),
            activity_id=self._execute_activity_id,
        )
        self._execute_scheduled = True
        return handle

    async def _route(
        self, task_id: str, prepared: PreparedPrompt, waited: RoutingDecision | None = None
    ) -> RoutingDecision:
        """The GPU queue for the next execute activity, from the pool's inventory (and, for a
        job `waited` did not bring to a GPU in time, whether another GPU idles); the pool queue
        when routing cannot be decided (never a failure of the job)."""
        try:
            decision: RoutingDecision = await workflow.execute_local_activity(
                ROUTE_ACTIVITY,
                RouteInput(
                    task_id=task_id, pool=prepared.pool, prompt=prepared.prompt, waited=waited
                ),
                result_type=RoutingDecision,
                start_to_close_timeout=ROUTE_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=2),
                summary="route to a GPU worker",
            )
            return decision
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            return RoutingDecision(
                routing="cold",
                task_queue=pool_task_queue(prepared.pool),
                reason=f"not routed: {err.cause or err}",
            )

    def _set_routing(
        self, routing: RoutingDecision, prepared: PreparedPrompt, memo: bool = True
    ) -> None:
        """The status, the memo (GET /tasks/{id}) and the Web UI's details say where the job
        goes and why."""
        status = self._status
        if routing == status.routing:
            return  # still waiting for the same worker, for the same reason: nothing new to say
        status.routing = routing
        status.task_queue = routing.task_queue
        status.worker = routing.worker
        if memo:
            workflow.upsert_memo({ROUTING_MEMO: routing.model_dump(mode="json")})
        workflow.set_current_details(
            f"**running** `{prepared.workflow_id}` on `{routing.task_queue}` "
            f"({routing.routing}: {routing.reason})"
        )

    def _final_failure(self, error: GenerationError, prepared: PreparedPrompt) -> ApplicationError:
        """The workflow's failure for `error`, with the job's two counts."""
        error.attempt = self._status.attempt
        error.infrastructure_retries = self._status.infrastructure_retries
        if error.param is None and error.node_id and error.input_name:
            error.param = prepared.param_bindings.get(f"{error.node_id}.{error.input_name}")
        return ApplicationError(error.message, error, type=error.type, non_retryable=True)

    async def _prepare(self, task_id: str, request: GenerationRequest) -> PreparedPrompt:
        try:
            prepared: PreparedPrompt = await workflow.execute_local_activity(
                PREPARE_ACTIVITY,
                PrepareInput(
                    task_id=task_id, workflow_id=request.workflow_id, params=request.params
                ),
                result_type=PreparedPrompt,
                start_to_close_timeout=PREPARE_TIMEOUT,
                retry_policy=RetryPolicy(
                    maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES
                ),
                summary=f"render {request.workflow_id}",
            )
            return prepared
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            raise _generation_failure(err, None) from None

    async def _admit(self, task_id: str, pool: str) -> None:
        """Go on if `pool` takes one more job; else end this run as skipped: Canceled, with the
        reason as its cancel reason and the outcome in the memo (GET /schedules counts them)."""
        try:
            outcome = await workflow.execute_local_activity(
                ADMISSION_ACTIVITY,
                AdmissionCheck(task_id=task_id, pool=pool),
                result_type=AdmissionOutcome,
                start_to_close_timeout=ADMISSION_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
                summary=f"admission to {pool}",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise asyncio.CancelledError() from err
            # Never skipped for want of an answer: the job queues as it would without a limit.
            workflow.logger.warning("admission to %s not checked: %s", pool, err.cause or err)
            return
        if outcome.admitted:
            return
        workflow.upsert_memo({ADMISSION_MEMO: outcome.model_dump(mode="json")})
        # The same way as the cancel signal: a run cannot end itself as Canceled.
        self._cancel_reason = outcome.skip_reason()
        self._status.cancel_reason = self._cancel_reason
        info = workflow.info()
        await workflow.execute_local_activity(
            REQUEST_CANCEL_ACTIVITY,
            CancelRequest(task_id=info.workflow_id, run_id=info.run_id, reason=self._cancel_reason),
            start_to_close_timeout=timedelta(seconds=30),
            summary="skipped: pool full",
        )
        await workflow.wait_condition(lambda: False)  # until the cancellation arrives

    def _finish(self, outcome: str, detail: str | None) -> None:
        """The generation ended: phase "done", and the Web UI's Current Details say how."""
        self._status.phase = "done"
        self._status.finished_at = workflow.now()
        self._done_details = f"**done: {outcome}**" + (f" — {detail}" if detail else "")
        workflow.set_current_details(self._done_details)

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> GenerationStatus:
        """Phase, attempt, worker, resolved params, priority and timestamps.

        Phases: "queued" (started, nothing done yet), "rendering" (prepare), "running" (the GPU
        step is scheduled: waiting for a GPU or on one), "notifying" (the generation ended; its
        webhook is being delivered, `outcome` and `result` are set), "done". Which of
        waiting/running, the
        live attempt and the progress are in the execute activity's heartbeat details
        (`temporal workflow describe`), which the API reads; `attempt` and `worker` here are
        final once the job is done.
        """
        return self._status

    @workflow.signal(name=CANCEL_SIGNAL, unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def cancel(self, reason: str = "") -> None:
        """Cancel this generation, recording why. Same outcome as `temporal workflow cancel`.

        A workflow cannot end itself as Canceled, and Temporal refuses a workflow's request to
        cancel itself as an external workflow; so a local activity asks Temporal to cancel this run
        with the reason. The usual cancellation path then stops the GPU job (deletes a queued
        prompt, interrupts a running one) and the workflow closes as Canceled.
        """
        # An ended generation whose webhook is being delivered has nothing left to cancel.
        if self._status.phase in ("done", "notifying") or self._cancel_reason is not None:
            return
        self._cancel_reason = reason or "cancelled by signal"
        self._status.cancel_reason = self._cancel_reason
        info = workflow.info()
        await workflow.execute_local_activity(
            REQUEST_CANCEL_ACTIVITY,
            CancelRequest(task_id=info.workflow_id, run_id=info.run_id, reason=self._cancel_reason),
            start_to_close_timeout=timedelta(seconds=30),
            summary="cancel requested by signal",
        )

    @workflow.signal(
        name=SET_PRIORITY_SIGNAL, unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON
    )
    async def set_priority(self, priority: int) -> None:
        """Re-queue a job still waiting for a GPU at a new Temporal task priority (1 highest).

        Before the GPU step is scheduled, the new priority is simply used when it is. After, a
        local activity updates the scheduled activity's options, and Temporal re-queues its task
        at that priority. A job that already runs is unaffected (only a retry would use it).
        """
        if not isinstance(priority, int) or not 1 <= priority <= 5:
            workflow.logger.warning(
                "set_priority ignored: %r is not an integer from 1 to 5", priority
            )
            return
        if self._status.phase == "done":
            return
        self._priority = priority
        self._status.priority = priority
        if not self._execute_scheduled:
            return
        info = workflow.info()
        await workflow.execute_local_activity(
            UPDATE_PRIORITY_ACTIVITY,
            PriorityChange(
                task_id=info.workflow_id,
                run_id=info.run_id,
                activity_id=self._execute_activity_id,
                priority=priority,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            summary=f"priority {priority}",
        )


def _generation_failure(err: ActivityError, prepared: PreparedPrompt | None) -> ApplicationError:
    """An activity failure as the workflow's failure: readable message, GenerationError details."""
    time_limit = prepared.timeout_seconds if prepared is not None else None
    error = decode_generation_error(err, time_limit=time_limit) or GenerationError(
        type=str(ErrorType.ACTIVITY_ERROR), message=str(err.cause or err)
    )
    if prepared is not None and error.param is None and error.node_id and error.input_name:
        error.param = prepared.param_bindings.get(f"{error.node_id}.{error.input_name}")
    if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED and prepared is not None:
        error.attempt = error.attempt or prepared.max_attempts
        error.message = f"{error.message} (gave up after {prepared.max_attempts} attempts)"
    return ApplicationError(error.message, error, type=error.type, non_retryable=True)


def _decoded(err: ActivityError, prepared: PreparedPrompt) -> GenerationError:
    """The GenerationError an execute activity failed with; an error we cannot read counts as an
    unexpected one of the activity."""
    return decode_generation_error(err, time_limit=prepared.timeout_seconds) or generation_error(
        ErrorType.ACTIVITY_ERROR, reason=str(err.cause or err)
    )


def _not_taken(err: ActivityError) -> bool:
    """Whether the activity ended because no worker took it within its schedule-to-start
    limit: the routed worker stayed busy (routing, not a failure of the job)."""
    cause = err.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


def _is_deadline(err: ActivityError) -> bool:
    """Whether the activity ended by its schedule-to-close timeout: the job's deadline."""
    cause = err.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_CLOSE


def _last_fault_before_deadline(err: ActivityError) -> InfrastructureFault | None:
    """The failure of the last attempt before the deadline, when Temporal tells it: the cause
    of its schedule-to-close timeout, or the failure it stopped retrying on."""
    cause: BaseException | None = err.cause
    if isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_CLOSE:
        cause = cause.__cause__
    error = decode_generation_error(cause) if cause is not None else None
    return InfrastructureFault(type=error.type, message=error.message) if error else None


def _deadline_failure(
    prepared: PreparedPrompt, last: InfrastructureFault | None
) -> ApplicationError:
    error = generation_error(
        ErrorType.DEADLINE_EXCEEDED,
        deadline=prepared.deadline_seconds or 0,
        last=f"; last fault: {last.type}: {last.message}" if last else "",
    )
    return ApplicationError(error.message, error, type=error.type, non_retryable=True)


def _backoff(retry: int) -> timedelta:
    """Wait before the workflow's `retry`th retry of the GPU step: 1 s, doubling, at most 30 s."""
    seconds = EXECUTE_RETRY_INITIAL.total_seconds() * 2 ** min(retry - 1, 16)
    return min(timedelta(seconds=seconds), EXECUTE_RETRY_MAXIMUM)


def delivery_id_for(task_id: str, run_id: str) -> str:
    """The webhook delivery id of one generation run (X-Comfy-Delivery)."""
    return str(uuid.uuid5(_DELIVERY_ID_NAMESPACE, f"{task_id}/{run_id}"))


def _delivery_id(info: workflow.Info) -> str:
    return delivery_id_for(info.workflow_id, info.run_id)


def _notify_failure(err: ActivityError) -> tuple[int, int | None, str]:
    """(attempts made, the receiver's last HTTP status, why) of a webhook that was given up on.

    The notify activity puts {"attempt", "status_code"} in its errors' details; when Temporal
    stopped retrying on a timeout, the last attempt's error is the timeout's cause.
    """
    cause: BaseException | None = err.cause
    app: ApplicationError | None = None
    while cause is not None:
        if isinstance(cause, ApplicationError):
            app = cause
            break
        cause = cause.__cause__
    if app is None:
        return 0, None, str(err.cause or err)
    detail = app.details[0] if app.details else None
    attempt = detail.get("attempt", 0) if isinstance(detail, dict) else 0
    status_code = detail.get("status_code") if isinstance(detail, dict) else None
    return int(attempt or 0), status_code, app.message


def _execute_input(task_id: str, prepared: PreparedPrompt, try_number: int) -> ExecuteInput:
    """The GPU step's input, from the prepared prompt: one place, so both retry paths send the
    same fields (a field left out of one of two copies once dropped a job's model files)."""
    return ExecuteInput(
        task_id=task_id,
        workflow_id=prepared.workflow_id,
        prompt=prepared.prompt,
        output_nodes=prepared.output_nodes,
        param_bindings=prepared.param_bindings,
        timeout_seconds=prepared.timeout_seconds,
        previews=prepared.previews,
        image_inputs=prepared.image_inputs,
        model_inputs=prepared.model_inputs,
        stall_timeout=prepared.stall_timeout,
        try_number=try_number,
    )
