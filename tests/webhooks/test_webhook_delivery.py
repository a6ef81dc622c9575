"""Webhooks end to end: a real control worker delivers `notify` to a receiver on loopback, with
Temporal retrying it; the task (as GET /tasks/{id} reads it) shows how delivery went."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError

from activities.generation.webhooks import verify_signature
from temporal_workflows.names import CANCEL_SIGNAL
from tests.support.stack import GenerationStack
from tests.support.temporal import batch_cancel, keep_history
from tests.support.waiting import wait_for
from tests.support.webhooks import PUBLIC_URL, WEBHOOK_SECRET, WebhookReceiver

# Refused by the manifest (width must be an integer): the generation fails in `prepare`, which
# needs no GPU worker.
BAD_PARAMS = {"width": "wide"}


async def test_success_posts_signed_result_as_the_task_shows_it(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    await webhook_stack.start_gpu_worker()
    handle = await webhook_stack.submit(callback_url=receiver.url)
    await handle.result()

    (hook,) = await receiver.wait_for_requests(1)
    assert verify_signature(WEBHOOK_SECRET, hook.body, hook.headers["X-Comfy-Signature"])
    body = hook.json()
    task = await webhook_stack.task(handle.id)
    assert task.status == "SUCCESS"
    assert body["status"] == "SUCCESS"
    assert body["task_id"] == handle.id
    assert body["status_url"] == f"{PUBLIC_URL}/tasks/{handle.id}"
    assert body["result"] == task.result.model_dump(mode="json")  # type: ignore[union-attr]
    assert body["result"]["download_url"].startswith(f"{PUBLIC_URL}/tasks/{handle.id}/outputs/")
    assert hook.headers["X-Comfy-Delivery"] == body["delivery_id"]
    assert task.webhook is not None
    assert (task.webhook.status, task.webhook.attempts) == ("delivered", 1)
    assert task.webhook.delivery_id == body["delivery_id"]
    await keep_history(handle, "success_with_webhook")


async def test_signature_does_not_verify_with_another_secret(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    handle = await webhook_stack.submit(BAD_PARAMS, callback_url=receiver.url)
    (hook,) = await receiver.wait_for_requests(1)
    assert not verify_signature("another-secret", hook.body, hook.headers["X-Comfy-Signature"])
    tampered = hook.body.replace(b"FAILURE", b"SUCCESS")
    assert not verify_signature(WEBHOOK_SECRET, tampered, hook.headers["X-Comfy-Signature"])
    with pytest.raises(WorkflowFailureError):
        await handle.result()


async def test_failure_posts_the_error_as_the_task_shows_it(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    handle = await webhook_stack.submit(BAD_PARAMS, callback_url=receiver.url)
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    (hook,) = await receiver.wait_for_requests(1)
    assert verify_signature(WEBHOOK_SECRET, hook.body, hook.headers["X-Comfy-Signature"])
    body = hook.json()
    task = await webhook_stack.task(handle.id)
    assert task.status == body["status"] == "FAILURE"
    assert body["error"]["type"] == "InvalidParams"
    assert body["error"]["param"] == "width"
    assert body["error"] == task.error.model_dump(mode="json")  # type: ignore[union-attr]
    assert task.webhook is not None and task.webhook.status == "delivered"


async def test_cancel_posts_cancelled_and_the_workflow_still_closes_cancelled(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    gpu = await webhook_stack.start_gpu_worker()
    handle = await webhook_stack.submit(
        {"steps": 200, "seconds_per_step": 0.05}, callback_url=receiver.url
    )

    async def running_in_comfyui() -> bool:
        return bool((await gpu.comfy_queue()).get("queue_running"))

    await wait_for(running_in_comfyui, "the prompt to run in ComfyUI")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    (hook,) = await receiver.wait_for_requests(1)
    assert verify_signature(WEBHOOK_SECRET, hook.body, hook.headers["X-Comfy-Signature"])
    assert hook.json()["status"] == "CANCELLED"
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    task = await webhook_stack.task(handle.id)
    assert task.status == "CANCELLED"
    assert task.webhook is not None and task.webhook.status == "delivered"
    await keep_history(handle, "cancel_with_webhook")


async def test_receiver_errors_are_retried_until_delivered(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    receiver.answers = [503, 503]
    handle = await webhook_stack.submit(BAD_PARAMS, callback_url=receiver.url)

    task = await webhook_stack.wait_for_webhook(handle.id, "delivered")
    assert task.webhook is not None
    assert task.webhook.attempts == 3
    assert task.webhook.status_code == 200
    assert len(receiver.received) == 3
    ids = {hook.headers["X-Comfy-Delivery"] for hook in receiver.received}
    assert ids == {task.webhook.delivery_id}
    assert len({hook.body for hook in receiver.received}) == 1  # the same signed body each time


async def test_pending_delivery_shows_attempts_and_last_error(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    receiver.down = True
    handle = await webhook_stack.submit(BAD_PARAMS, callback_url=receiver.url)
    await receiver.wait_for_requests(2)

    async def pending_with_error():
        task = await webhook_stack.task(handle.id)
        webhook = task.webhook
        if webhook is None or webhook.attempts < 2 or webhook.last_error is None:
            return None
        return task

    task = await wait_for(pending_with_error, "the pending webhook's attempts")
    assert task.webhook is not None
    assert task.webhook.status == "pending"
    assert "503" in task.webhook.last_error  # type: ignore[operator]
    # The generation itself has ended: the task says so while the webhook is retried.
    assert task.status == "FAILURE"
    assert task.error is not None and task.error.param == "width"
    receiver.down = False
    await webhook_stack.wait_for_webhook(handle.id, "delivered")


async def test_client_error_from_receiver_is_final(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    receiver.answers = [410]
    handle = await webhook_stack.submit(BAD_PARAMS, callback_url=receiver.url)
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    task = await webhook_stack.task(handle.id)
    assert task.webhook is not None
    assert task.webhook.status == "failed"
    assert (task.webhook.attempts, task.webhook.status_code) == (1, 410)
    assert "410" in (task.webhook.last_error or "")
    assert len(receiver.received) == 1


async def test_too_many_requests_is_retried(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    receiver.answers = [429]
    handle = await webhook_stack.submit(BAD_PARAMS, callback_url=receiver.url)
    task = await webhook_stack.wait_for_webhook(handle.id, "delivered")
    assert task.webhook is not None and task.webhook.attempts == 2


async def test_delivery_survives_a_control_worker_restart(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    receiver.down = True
    handle = await webhook_stack.submit(BAD_PARAMS, callback_url=receiver.url)
    await receiver.wait_for_requests(1)

    await webhook_stack.stop_control_worker()
    tried_while_running = len(receiver.received)
    receiver.down = False
    await webhook_stack.start_control_worker()

    task = await webhook_stack.wait_for_webhook(handle.id, "delivered")
    assert task.webhook is not None
    assert task.webhook.attempts == len(receiver.received) > tried_while_running
    assert {h.headers["X-Comfy-Delivery"] for h in receiver.received} == {task.webhook.delivery_id}
    with pytest.raises(WorkflowFailureError):
        await handle.result()


async def test_cancel_signal_while_the_webhook_is_retried_changes_nothing(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    receiver.down = True
    handle = await webhook_stack.submit(BAD_PARAMS, callback_url=receiver.url)
    await receiver.wait_for_requests(1)
    await handle.signal(CANCEL_SIGNAL, "too late")
    receiver.down = False

    task = await webhook_stack.wait_for_webhook(handle.id, "delivered")
    assert task.status == "FAILURE"
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
    assert {hook.json()["status"] for hook in receiver.received} == {"FAILURE"}


async def test_batch_cancel_reason_shows_while_the_webhook_is_retried(
    webhook_stack: GenerationStack, receiver: WebhookReceiver
):
    """The workflow only knows a reason its cancel event carries; a batch cancel's is on the
    batch job, and the task shows it already while the webhook is being delivered."""
    receiver.down = True
    handle = await webhook_stack.submit(callback_url=receiver.url)  # no GPU worker: it waits
    query = f'WorkflowId="{handle.id}" AND ExecutionStatus="Running"'
    await batch_cancel(webhook_stack.client, webhook_stack.address, query, "bad model")
    await receiver.wait_for_requests(1)

    task = await webhook_stack.task(handle.id)
    assert task.webhook is not None and task.webhook.status == "pending"
    assert task.status == "CANCELLED"
    assert task.cancel_reason == "bad model"
    assert task.result == "cancelled: bad model"
    receiver.down = False
    await webhook_stack.wait_for_webhook(handle.id, "delivered")
    assert (await webhook_stack.task(handle.id)).cancel_reason == "bad model"
