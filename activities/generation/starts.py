"""How a GenerationWorkflow is started (`GenerationStart`): its request, search attributes, memo,
Web UI summary and task priority. One shape for POST /generate, a schedule's runs and the items
of a batch, whichever process starts them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from temporal_workflows.names import (
    CONTROL_TASK_QUEUE,
    GENERATION_WORKFLOW,
    REQUEST_MEMO,
    ROUTING_MEMO,
    SA_BATCH,
    SA_POOL,
    SA_WORKER,
    SA_WORKFLOW,
)
from temporal_workflows.payloads import (
    GenerationOptions,
    GenerationRequest,
    PreparedPrompt,
    RoutingDecision,
)

_SUMMARY_TEXT_CHARS = 60


def static_summary(workflow_id: str, params: Mapping[str, Any]) -> str:
    """The Web UI's one-line summary, e.g. `flux_wavespeed: "a majestic cat on a throne…"`."""
    prompt = params.get("prompt")
    if isinstance(prompt, str) and prompt:
        text = prompt if len(prompt) <= _SUMMARY_TEXT_CHARS else prompt[:_SUMMARY_TEXT_CHARS] + "…"
        return f'{workflow_id}: "{text}"'
    shown = ", ".join(f"{k}={v}" for k, v in list(params.items())[:4])
    return f"{workflow_id}: {shown}" if shown else workflow_id


@dataclass(frozen=True)
class GenerationStart:
    """What Temporal is given to start a GenerationWorkflow on the control queue: the request,
    tagged (search attributes), remembered (memo) and summarised for the Web UI."""

    request: GenerationRequest
    search_attributes: TypedSearchAttributes
    memo: dict[str, Any]
    static_summary: str
    priority: Priority

    async def start(
        self,
        client: Client,
        task_id: str,
        *,
        idempotent: bool,
        task_queue: str = CONTROL_TASK_QUEUE,
    ) -> None:
        """Start it as task `task_id`. Idempotent: a running task with this id is returned as
        is (USE_EXISTING), a closed one is never run again (REJECT_DUPLICATE, which raises
        WorkflowAlreadyStartedError): one key, one generation, also for concurrent repeats."""
        policies: dict[str, Any] = {}
        if idempotent:
            policies = {
                "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
                "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
            }
        await client.start_workflow(
            GENERATION_WORKFLOW,
            self.request,
            id=task_id,
            task_queue=task_queue,
            search_attributes=self.search_attributes,
            memo=self.memo,
            static_summary=self.static_summary,
            priority=self.priority,
            # No request_eager_start: it saves ~8 ms on a lone job, but under a burst of POSTs it
            # cut their throughput by a third to two thirds and delayed a backlog's first job
            # (bench/overhead.py, A/B on 2 cores).
            **policies,
        )

    def schedule_action(self, schedule_id: str) -> ScheduleActionStartWorkflow:
        """The same start as the action of schedule `schedule_id`, which starts it once per run."""
        return ScheduleActionStartWorkflow(
            GENERATION_WORKFLOW,
            self.request,
            id=schedule_id,
            task_queue=CONTROL_TASK_QUEUE,
            typed_search_attributes=self.search_attributes,
            memo=self.memo,
            static_summary=self.static_summary,
            priority=self.priority,
        )


def build_generation_start(
    workflow_id: str,
    pool: str,
    params: dict[str, Any],
    options: GenerationOptions,
    *,
    memo: Mapping[str, Any] | None = None,
    summary_note: str | None = None,
    batch_id: str | None = None,
    prepared: PreparedPrompt | None = None,
    routing: RoutingDecision | None = None,
) -> GenerationStart:
    """The start of one generation of `workflow_id` (on GPU pool `pool`) with `params`, already
    checked and staged; `memo` adds entries beside the request, `summary_note` a parenthesis to
    the summary. A batch's item carries its batch id as a search attribute and as its fairness
    key, so that batches share the GPUs with each other where the server has fairness on.
    `prepared`, the graph rendered now, spares the workflow its render step (POST /generate; a
    schedule's runs render when they run); `routing`, its first try's GPU queue decided now
    (POST /generate: the workflow then has no routing step for it)."""
    request = GenerationRequest(workflow_id=workflow_id, params=params, options=options)
    # Every generation started here takes the routing step (the control worker's --routing
    # decides how); the memo keeps the request as the client sent it.
    routed = request.model_copy(update={"routed": True})
    summary = static_summary(workflow_id, params)
    attributes = [SearchAttributePair(SA_WORKFLOW, workflow_id), SearchAttributePair(SA_POOL, pool)]
    if options.worker:
        attributes.append(SearchAttributePair(SA_WORKER, options.worker))
    if batch_id is not None:
        attributes.append(SearchAttributePair(SA_BATCH, batch_id))
    priority = (
        Priority(priority_key=options.priority, fairness_key=batch_id)
        if options.priority is not None or batch_id is not None
        else Priority.default
    )
    # The memo keeps what the client asked for; the rendered graph travels in the input only.
    request_memo = request.model_dump(mode="json")
    if prepared is not None:
        routed = routed.model_copy(update={"prepared": prepared})
    routing_memo: dict[str, Any] = {}
    if routing is not None and not options.worker:
        routed = routed.model_copy(update={"routing": routing})
        routing_memo[ROUTING_MEMO] = routing.model_dump(mode="json")
    return GenerationStart(
        request=routed,
        search_attributes=TypedSearchAttributes(attributes),
        memo={REQUEST_MEMO: request_memo, **routing_memo, **(memo or {})},
        static_summary=f"{summary} ({summary_note})" if summary_note else summary,
        priority=priority,
    )
