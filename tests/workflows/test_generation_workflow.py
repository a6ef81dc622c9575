"""GenerationWorkflow's own logic on the real dev server, with stand-in activities.

The stand-ins replace only ComfyUI and the manifests; routing, retries, failure mapping, the
`status` query and both ways of cancelling run through Temporal for real. End-to-end runs with the
real GPU worker and the ComfyUI emulator are in test_generation_e2e.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.generation.control import request_cancel, update_priority
from activities.generation.routing import RouteActivities
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.names import (
    EXECUTE_ACTIVITY,
    PREPARE_ACTIVITY,
    pool_task_queue,
    worker_task_queue,
)
from temporal_workflows.payloads import (
    ExecuteInput,
    ExecuteResult,
    GenerationError,
    GenerationOptions,
    GenerationRequest,
    OutputRef,
    PreparedPrompt,
    PrepareInput,
    Progress,
)
from tests.support.temporal import keep_history
from tests.support.waiting import wait_for

DEADLINE = 20.0
# The SDK answers it for every workflow; the Web UI reads "Current Details" from it.
METADATA_QUERY = "__temporal_workflow_metadata"


# The control worker's routing step: these pools have no inventory, so every job goes to the pool
# queue (or a pinned worker's), as before routing.
ROUTE = RouteActivities().route_generation


def prepared_for(pool: str, **overrides) -> Callable:
    @activity.defn(name=PREPARE_ACTIVITY)
    async def prepare_generation(request: PrepareInput) -> PreparedPrompt:
        fields = dict(
            workflow_id=request.workflow_id,
            prompt={
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": request.params.get("width", 8)},
                }
            },
            params={**request.params, "seed": 1234},
            revision="rev-1",
            pool=pool,
            timeout_seconds=30,
            max_attempts=3,
            param_bindings={"1.width": "width"},
        )
        fields.update(overrides)
        return PreparedPrompt(**fields)

    return prepare_generation


def result_for(request: ExecuteInput, worker: str = "gpu-a") -> ExecuteResult:
    return ExecuteResult(
        outputs=[OutputRef(filename="out.png", content_type="image/png", size=3, node_id="9")],
        worker=worker,
        comfy_prompt_id="p-1",
        comfy_execution_seconds=0.25,
        attempt=activity.info().attempt,
    )


@activity.defn(name=EXECUTE_ACTIVITY)
async def execute_prompt_succeeds(request: ExecuteInput) -> ExecuteResult:
    return result_for(request)


@asynccontextmanager
async def workers(
    client: Client, pool: str, prepare: Callable, execute: Callable, *, gpu_queue: str | None = None
) -> AsyncIterator[str]:
    """A control Worker on a private queue and a GPU Worker on the pool's (or a given) queue."""
    control_queue = f"control-{uuid.uuid4()}"
    async with (
        Worker(
            client,
            task_queue=control_queue,
            workflows=[GenerationWorkflow],
            activities=[prepare, request_cancel, update_priority, ROUTE],
        ),
        Worker(
            client,
            task_queue=gpu_queue or pool_task_queue(pool),
            activities=[execute],
            max_heartbeat_throttle_interval=timedelta(milliseconds=200),
        ),
    ):
        yield control_queue


async def start(client: Client, queue: str, request: GenerationRequest):
    return await client.start_workflow(
        GenerationWorkflow.run, request, id=f"gen-{uuid.uuid4()}", task_queue=queue
    )


def failure_of(err: WorkflowFailureError) -> tuple[ApplicationError, GenerationError]:
    cause = err.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause, GenerationError.model_validate(cause.details[0])


async def test_success_returns_outputs_resolved_params_worker_and_timings(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    async with workers(temporal_client, pool, prepared_for(pool), execute_prompt_succeeds) as queue:
        handle = await start(
            temporal_client, queue, GenerationRequest(workflow_id="wf", params={"width": 64})
        )
        result = await handle.result()
    assert result.task_id == handle.id
    assert [o.filename for o in result.outputs] == ["out.png"]
    assert result.params == {"width": 64, "seed": 1234}
    assert (result.worker, result.attempts, result.revision) == ("gpu-a", 1, "rev-1")
    assert result.timings["comfy_execution_seconds"] == 0.25
    assert result.timings["total_seconds"] >= result.timings["execute_seconds"] > 0


async def test_pinned_request_runs_on_the_workers_own_queue(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    seen_queues: list[str] = []

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        seen_queues.append(activity.info().task_queue)
        return result_for(request, worker="gpu-b")

    own_queue = worker_task_queue(pool, "gpu-b")
    async with workers(
        temporal_client, pool, prepared_for(pool), execute_prompt, gpu_queue=own_queue
    ) as queue:
        request = GenerationRequest(workflow_id="wf", options=GenerationOptions(worker="gpu-b"))
        result = await (await start(temporal_client, queue, request)).result()
    assert seen_queues == [own_queue]
    assert result.worker == "gpu-b"


async def test_invalid_params_fail_without_reaching_a_gpu(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    executed: list[str] = []

    @activity.defn(name=PREPARE_ACTIVITY)
    async def prepare_generation(request: PrepareInput) -> PreparedPrompt:
        error = GenerationError(
            type="InvalidParams", message="width: must be <= 4096", param="width"
        )
        raise ApplicationError(error.message, error, type="InvalidParams", non_retryable=True)

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        executed.append(request.task_id)
        return result_for(request)

    async with workers(temporal_client, pool, prepare_generation, execute_prompt) as queue:
        handle = await start(
            temporal_client, queue, GenerationRequest(workflow_id="wf", params={"width": 10**6})
        )
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    cause, error = failure_of(caught.value)
    assert cause.type == "InvalidParams"
    assert (error.param, error.message) == ("width", "width: must be <= 4096")
    assert executed == []


async def test_comfyui_execution_error_fails_once_with_node_and_class_type(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    attempts: list[int] = []

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        attempts.append(activity.info().attempt)
        error = GenerationError(
            type="ComfyUIExecutionError",
            message="ComfyUI failed in node 5 (SaveImage): OSError: disk full",
            node_id="5",
            class_type="SaveImage",
            attempt=activity.info().attempt,
        )
        raise ApplicationError(error.message, error, type=error.type, non_retryable=True)

    async with workers(temporal_client, pool, prepared_for(pool), execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        status = await handle.query(GenerationWorkflow.status)
    cause, error = failure_of(caught.value)
    assert cause.type == "ComfyUIExecutionError"
    assert cause.message == "ComfyUI failed in node 5 (SaveImage): OSError: disk full"
    assert (error.node_id, error.class_type, error.attempt) == ("5", "SaveImage", 1)
    assert attempts == [1]
    assert status.phase == "done" and status.error is not None and status.error.node_id == "5"


async def test_comfyui_validation_error_names_the_parameter_bound_to_the_input(
    temporal_client: Client,
):
    pool = f"pool-{uuid.uuid4()}"

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        error = GenerationError(
            type="ComfyUIValidationError",
            message="ComfyUI rejected the prompt: node 1 (EmptyImage) input 'width': too big",
            node_id="1",
            class_type="EmptyImage",
            input_name="width",
        )
        raise ApplicationError(error.message, error, type=error.type, non_retryable=True)

    async with workers(temporal_client, pool, prepared_for(pool), execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    _, error = failure_of(caught.value)
    assert (error.type, error.param, error.input_name) == (
        "ComfyUIValidationError",
        "width",
        "width",
    )


async def test_infrastructure_faults_are_retried_past_the_jobs_retries_without_spending_them(
    temporal_client: Client,
):
    pool = f"pool-{uuid.uuid4()}"
    seen: list[tuple[str, int, int]] = []

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        info = activity.info()
        seen.append((info.activity_id, request.try_number, info.attempt))
        if info.attempt <= 2:
            raise ApplicationError("ComfyUI is unavailable", type="ComfyUIUnavailable")
        return result_for(request)

    prepare = prepared_for(pool, max_attempts=1)  # retries: 0
    async with workers(temporal_client, pool, prepare, execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        result = await handle.result()
    # Retried in place by Temporal: one execute activity, three attempts, no history per retry.
    assert seen == [("execute", 1, 1), ("execute", 1, 2), ("execute", 1, 3)]
    assert (result.attempts, result.infrastructure_retries) == (1, 2)
    await keep_history(handle, "infrastructure_retries_in_place")


async def test_the_jobs_own_retryable_failures_spend_its_retries_and_stop_there(
    temporal_client: Client,
):
    pool = f"pool-{uuid.uuid4()}"
    seen: list[tuple[str, int, int]] = []

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        info = activity.info()
        seen.append((info.activity_id, request.try_number, info.attempt))
        error = GenerationError(
            type="ComfyUITimeout",
            message="ComfyUI ran longer than the workflow's limit of 30 s",
            retryable=True,
            attempt=info.attempt,
        )
        raise ApplicationError(error.message, error, type=error.type)

    prepare = prepared_for(pool, max_attempts=2)
    async with workers(temporal_client, pool, prepare, execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    cause, error = failure_of(caught.value)
    # One execute activity per try of the job's, each with its own id for set_priority.
    assert seen == [("execute", 1, 1), ("execute-2", 2, 1)]
    assert cause.type == "ComfyUITimeout" and "gave up after 2 attempts" in error.message
    assert (error.attempt, error.infrastructure_retries) == (2, 0)
    await keep_history(handle, "job_retries_spent")


async def test_infrastructure_faults_stop_at_the_deadline_naming_the_last_one(
    temporal_client: Client,
):
    pool = f"pool-{uuid.uuid4()}"

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        raise ApplicationError("output disk full", type="OutputStoreError")

    prepare = prepared_for(pool, deadline_seconds=3)
    async with workers(temporal_client, pool, prepare, execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(handle.result(), DEADLINE)
    cause, error = failure_of(caught.value)
    assert cause.type == "DeadlineExceeded"
    assert "deadline of 3 s" in error.message and "OutputStoreError" in error.message


async def test_the_first_out_of_memory_is_retried_free_and_the_second_is_final(
    temporal_client: Client,
):
    pool = f"pool-{uuid.uuid4()}"
    tries: list[int] = []

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        tries.append(request.try_number)
        error = GenerationError(
            type="ComfyUIOutOfMemory", message="ComfyUI failed in node 2", retryable=True
        )
        raise ApplicationError(error.message, error, type=error.type)

    prepare = prepared_for(pool, max_attempts=3)
    async with workers(temporal_client, pool, prepare, execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
    cause, error = failure_of(caught.value)
    assert tries == [1, 2]  # the retries: 2 of the manifest are not what stopped it
    assert cause.type == "ComfyUIOutOfMemory"
    assert (error.attempt, error.infrastructure_retries) == (1, 1)


async def test_set_priority_and_cancel_reach_the_execute_activity_of_a_later_try(
    temporal_client: Client,
):
    pool = f"pool-{uuid.uuid4()}"
    second_try = asyncio.Event()

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        if request.try_number == 1:
            error = GenerationError(type="ComfyUITimeout", message="too long", retryable=True)
            raise ApplicationError(error.message, error, type=error.type)
        second_try.set()
        while True:
            activity.heartbeat(Progress(phase="running", worker="gpu-a"))
            await asyncio.sleep(0.1)

    async with workers(temporal_client, pool, prepared_for(pool), execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        await asyncio.wait_for(second_try.wait(), DEADLINE)
        await handle.signal(GenerationWorkflow.set_priority, 1)

        async def reprioritised() -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            return [(p.activity_id, p.priority.priority_key) for p in pending] == [("execute-2", 1)]

        await wait_for(reprioritised, "the second try's activity at priority 1", DEADLINE)
        status = await handle.query(GenerationWorkflow.status)
        await handle.signal(GenerationWorkflow.cancel, "enough")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        description = await handle.describe()
    assert (status.attempt, status.infrastructure_retries) == (2, 0)
    assert description.status == WorkflowExecutionStatus.CANCELED


class BlockingExecute:
    """A stand-in GPU job that runs until cancelled and records when its cleanup finished."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cleanup_done_at: float | None = None

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(self, request: ExecuteInput) -> ExecuteResult:
        self.started.set()
        try:
            while True:
                activity.heartbeat(Progress(phase="running", worker="gpu-a", percent=10))
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            # Stands for "ComfyUI confirmed the interrupt": takes a moment.
            await asyncio.sleep(0.3)
            self.cleanup_done_at = asyncio.get_running_loop().time()
            raise


async def test_status_query_reports_phase_queue_and_params_while_running(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    job = BlockingExecute()
    async with workers(temporal_client, pool, prepared_for(pool), job.execute_prompt) as queue:
        handle = await start(
            temporal_client, queue, GenerationRequest(workflow_id="wf", params={"width": 32})
        )
        await asyncio.wait_for(job.started.wait(), DEADLINE)
        status = await handle.query(GenerationWorkflow.status)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert status.phase == "running"
    assert status.task_queue == pool_task_queue(pool)
    assert status.params == {"width": 32, "seed": 1234}
    assert status.attempt == 1 and status.submitted_at is not None


async def test_workflow_cancel_closes_canceled_only_after_the_gpu_job_stopped(
    temporal_client: Client,
):
    pool = f"pool-{uuid.uuid4()}"
    job = BlockingExecute()
    async with workers(temporal_client, pool, prepared_for(pool), job.execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        await asyncio.wait_for(job.started.wait(), DEADLINE)
        await handle.cancel(reason="changed my mind")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        closed_at = asyncio.get_running_loop().time()
        description = await handle.describe()
        status = await handle.query(GenerationWorkflow.status)
    assert description.status == WorkflowExecutionStatus.CANCELED
    assert job.cleanup_done_at is not None and job.cleanup_done_at <= closed_at
    assert status.cancel_reason == "changed my mind"


async def test_cancel_signal_closes_canceled_and_records_the_reason(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    job = BlockingExecute()
    async with workers(temporal_client, pool, prepared_for(pool), job.execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        await asyncio.wait_for(job.started.wait(), DEADLINE)
        await handle.signal(GenerationWorkflow.cancel, "wrong prompt")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        description = await handle.describe()
        status = await handle.query(GenerationWorkflow.status)
    assert description.status == WorkflowExecutionStatus.CANCELED
    assert job.cleanup_done_at is not None
    assert status.cancel_reason == "wrong prompt"


async def test_cancel_signal_while_waiting_for_a_gpu_cancels_without_any_worker(
    temporal_client: Client,
):
    pool = f"pool-{uuid.uuid4()}"
    control_queue = f"control-{uuid.uuid4()}"
    # Only the control worker runs: the job waits on the pool queue that nobody polls.
    async with Worker(
        temporal_client,
        task_queue=control_queue,
        workflows=[GenerationWorkflow],
        activities=[prepared_for(pool), request_cancel, ROUTE],
    ):
        handle = await start(temporal_client, control_queue, GenerationRequest(workflow_id="wf"))

        async def scheduled() -> bool:
            return (await handle.query(GenerationWorkflow.status)).phase == "running"

        await wait_for(scheduled, "execute_prompt to be scheduled", DEADLINE)
        await handle.signal(GenerationWorkflow.cancel, "no GPU today")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.CANCELED


async def test_cancel_signal_after_success_changes_nothing(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    async with workers(temporal_client, pool, prepared_for(pool), execute_prompt_succeeds) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        await handle.result()
        with pytest.raises(RPCError, match="completed"):  # signals to a closed run are refused
            await handle.signal(GenerationWorkflow.cancel, "too late")
        description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED


TRANSIENT_RPC_STATUSES = (
    RPCStatusCode.CANCELLED,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.UNAVAILABLE,
)


async def backlog_by_priority(client: Client, task_queue: str) -> dict[int, int]:
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_stats=True,
        )
    )
    return {
        key: stats.approximate_backlog_count
        for key, stats in response.stats_by_priority_key.items()
        if stats.approximate_backlog_count
    }


async def test_set_priority_requeues_a_waiting_job_ahead_of_the_others(temporal_client: Client):
    # The session's dev server runs one task-queue partition, so priority order is observable.
    pool = f"pool-{uuid.uuid4()}"
    gpu_queue = pool_task_queue(pool)
    control_queue = f"control-{uuid.uuid4()}"
    order: list[str] = []

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        order.append(request.task_id)
        return result_for(request)

    async with Worker(
        temporal_client,
        task_queue=control_queue,
        workflows=[GenerationWorkflow],
        activities=[prepared_for(pool), request_cancel, update_priority, ROUTE],
    ):
        handles = [
            await start(temporal_client, control_queue, GenerationRequest(workflow_id="wf"))
            for _ in range(4)
        ]

        async def all_scheduled() -> bool:
            phases = [(await h.query(GenerationWorkflow.status)).phase for h in handles]
            return phases == ["running"] * 4

        await wait_for(all_scheduled, "four jobs waiting for a GPU", DEADLINE)
        urgent = handles[-1]
        await urgent.signal(GenerationWorkflow.set_priority, 1)

        async def requeued() -> bool:
            # The superseded task stays counted at priority 3 until matching drops it as stale.
            try:
                backlog = await backlog_by_priority(temporal_client, gpu_queue)
            except RPCError as err:
                # A loaded dev server sometimes cancels the stats fan-out; ask again.
                if err.status not in TRANSIENT_RPC_STATUSES:
                    raise
                return False
            return backlog.get(1) == 1

        # Task-queue stats refresh every few seconds: allow for that.
        await wait_for(requeued, "the last job to wait at priority 1", timeout=30)
        status = await urgent.query(GenerationWorkflow.status)
        async with Worker(
            temporal_client, task_queue=gpu_queue, activities=[execute_prompt],
            max_concurrent_activities=1,
        ):  # fmt: skip
            await asyncio.gather(*(h.result() for h in handles))
    assert order[0] == urgent.id
    assert sorted(order) == sorted(h.id for h in handles)
    assert status.priority == 1
    await keep_history(urgent, "set_priority_while_waiting")


async def current_details(handle: WorkflowHandle) -> str:
    """The Web UI's "Current Details" of a run, from the SDK's built-in metadata query."""
    metadata = await handle.query(METADATA_QUERY, result_type=WorkflowMetadata)
    return metadata.current_details


async def test_current_details_read_running_then_done_success(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    release = asyncio.Event()

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        await release.wait()
        return result_for(request)

    async with workers(temporal_client, pool, prepared_for(pool), execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))

        async def running() -> bool:
            return (await current_details(handle)).startswith("**running**")

        await wait_for(running, "the job to run", DEADLINE)
        release.set()
        await handle.result()
        details = await current_details(handle)
    assert details == "**done: SUCCESS** — on `gpu-a` (cold), attempt 1"


async def test_current_details_of_a_failed_job_give_its_error(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"

    @activity.defn(name=EXECUTE_ACTIVITY)
    async def execute_prompt(request: ExecuteInput) -> ExecuteResult:
        error = GenerationError(type="ComfyUIExecutionError", message="ComfyUI failed in node 5")
        raise ApplicationError(error.message, error, type=error.type, non_retryable=True)

    async with workers(temporal_client, pool, prepared_for(pool), execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        details = await current_details(handle)
    assert details == "**done: FAILURE** — ComfyUIExecutionError: ComfyUI failed in node 5"


async def test_current_details_of_a_cancelled_job_give_the_reason(temporal_client: Client):
    pool = f"pool-{uuid.uuid4()}"
    job = BlockingExecute()
    async with workers(temporal_client, pool, prepared_for(pool), job.execute_prompt) as queue:
        handle = await start(temporal_client, queue, GenerationRequest(workflow_id="wf"))
        await asyncio.wait_for(job.started.wait(), DEADLINE)
        await handle.cancel(reason="changed my mind")
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        details = await current_details(handle)
    assert details == "**done: CANCELLED** — changed my mind"
