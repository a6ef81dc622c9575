"""Traces, exported over OTLP/HTTP to a receiver on loopback: one job makes one trace, from the
API's HTTP request through GenerationWorkflow and execute_prompt on the GPU worker down to a span
per ComfyUI node; without an endpoint nothing is traced."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from activities.generation.node_spans import SPAN_PREFIX
from activities.workers.settings import TracingSettings
from activities.workers.temporal_client import connect_temporal
from activities.workers.tracing import Tracing, start_tracing
from temporal_workflows.generation import GenerationWorkflow
from temporal_workflows.names import CONTROL_TASK_QUEUE
from temporal_workflows.payloads import GenerationRequest
from tests.support.graphs import SAMPLED_IMAGE_GRAPH
from tests.support.metrics import MetricsStack
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.worker_processes import COMFY_TEMPORAL, clean_environment

# The W3C trace context of a caller: the request's span continues its trace.
CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name}: {sorted(s.name for s in spans)}"
    return found[0]


async def test_one_job_is_one_trace_from_the_http_request_to_each_comfyui_node(
    traced_stack: MetricsStack, otlp_receiver: tuple[OtlpReceiver, str], temporal_client: Client
):
    receiver, _ = otlp_receiver
    async with traced_stack.api() as http:
        response = await http.post(
            "/generate",
            json={"workflow_id": "sampled_image", "params": {}},
            headers={"traceparent": f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"},
        )
        assert response.status_code == 202, response.text
        task_id = response.json()["task_id"]
        await asyncio.wait_for(temporal_client.get_workflow_handle(task_id).result(), 60)
    await traced_stack.flush_traces()

    trace = receiver.trace(CALLER_TRACE_ID)
    request = one(trace, "POST /generate")
    assert request.parent_span_id == CALLER_SPAN_ID
    assert request.attributes["http.route"] == "/generate"
    assert request.attributes["http.response.status_code"] == 202
    start = one(trace, "StartWorkflow:GenerationWorkflow")
    assert start.parent_span_id == request.span_id
    # The interceptor's workflow spans (zero-length, replay-safe) hang from the span that
    # started the workflow, side by side.
    run = one(trace, "RunWorkflow:GenerationWorkflow")
    assert run.parent_span_id == start.span_id
    start_execute = one(trace, "StartActivity:execute_prompt")
    assert start_execute.parent_span_id == start.span_id
    assert one(trace, "CompleteWorkflow:GenerationWorkflow").parent_span_id == start.span_id
    execute = one(trace, "RunActivity:execute_prompt")
    assert execute.parent_span_id == start_execute.span_id
    # The API (with its control worker) and the GPU worker exported their own spans.
    assert request.resource["comfy.process"] == "api"
    assert run.resource["comfy.process"] == "api"
    assert execute.resource["comfy.process"] == f"gpu-worker:{traced_stack.worker}"
    assert execute.resource["service.name"] == "comfy-temporal"

    nodes = [s for s in trace if s.name.startswith(SPAN_PREFIX)]
    assert all(node.parent_span_id == execute.span_id for node in nodes)
    # The emulator runs with --cache-none: every node of the graph ran once, none cached.
    ran = {node.attributes["comfyui.node.id"]: node.attributes for node in nodes}
    assert len(ran) == len(nodes) == len(SAMPLED_IMAGE_GRAPH)
    assert {n: a["comfyui.node.class_type"] for n, a in ran.items()} == {
        n: node["class_type"] for n, node in SAMPLED_IMAGE_GRAPH.items()
    }
    assert not any(a["comfyui.node.cached"] for a in ran.values())
    assert Counter(node.name for node in nodes) == Counter(
        SPAN_PREFIX + node["class_type"] for node in SAMPLED_IMAGE_GRAPH.values()
    )
    # Every span about the job (Temporal's carry its workflow id) is in this one trace.
    about_job = [s for s in receiver.spans if task_id in s.attributes.values()]
    assert len(about_job) >= 5 and all(s.trace_id == CALLER_TRACE_ID for s in about_job)


async def test_a_control_worker_process_exports_its_spans_to_the_configured_endpoint(
    temporal_address: str, tmp_path: Path, otlp_receiver: tuple[OtlpReceiver, str]
):
    receiver, endpoint = otlp_receiver
    (tmp_path / "workflows.yaml").write_text("{}\n")
    env = clean_environment()
    env.update(
        TEMPORAL_ADDRESS=temporal_address,
        MANIFESTS_DIR=str(tmp_path),
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
    )
    process = await asyncio.create_subprocess_exec(
        COMFY_TEMPORAL, "control-worker", "--workflows", str(tmp_path),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    caller = Tracing(endpoint, "test")
    try:
        client = await connect_temporal(temporal_address, interceptors=[caller.interceptor()])
        with caller.tracer.start_as_current_span("caller") as span:
            handle = await client.start_workflow(
                GenerationWorkflow.run,
                GenerationRequest(workflow_id="no_such_workflow"),
                id=f"gen-{uuid.uuid4()}",
                task_queue=CONTROL_TASK_QUEUE,
            )
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), 60)
    finally:
        process.send_signal(signal.SIGTERM)
        # It sends its last spans before it exits.
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await asyncio.to_thread(caller.shutdown)  # the receiver answers on this loop

    trace = receiver.trace(format(span.get_span_context().trace_id, "032x"))
    run = one(trace, "RunWorkflow:GenerationWorkflow")
    assert run.resource["comfy.process"] == "control-worker"
    assert one(trace, "StartWorkflow:GenerationWorkflow").resource["comfy.process"] == "test"


def test_tracing_is_off_without_an_endpoint():
    assert start_tracing(TracingSettings(otlp_endpoint=None), "api") is None
