"""Traces, off unless an OTLP endpoint is configured: OpenTelemetry spans from the API's HTTP
request through GenerationWorkflow and its activities to one span per ComfyUI node, exported over
OTLP/HTTP by each process.

Temporal's part is `temporalio.contrib.opentelemetry.TracingInterceptor` on each process's client,
which the Workers built on that client take too. It carries the trace in Temporal headers:
`StartWorkflow:GenerationWorkflow` where the API starts a job, `RunWorkflow:GenerationWorkflow`
and `StartActivity:<name>` from the control worker (recorded as zero-length spans, the
interceptor's replay-safe way), `RunActivity:<name>` on the worker that runs the activity, and
under `RunActivity:execute_prompt` the node spans (activities/generation/node_spans.py).

Each process keeps its own TracerProvider instead of installing a global one, so that two roles
in one interpreter (the API with its embedded control worker and a test's GPU worker) keep apart.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from activities.workers.settings import TracingSettings, add_setting_flag

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer
    from temporalio.contrib.opentelemetry import TracingInterceptor

logger = logging.getLogger(__name__)

# OTLP/HTTP's path for spans, appended to the base URL as OTEL_EXPORTER_OTLP_ENDPOINT specifies.
TRACES_PATH = "/v1/traces"
# How long a process waits at exit for its last spans to leave.
SHUTDOWN_TIMEOUT_MILLIS = 5000


def add_tracing_flags(parser: argparse.ArgumentParser) -> None:
    """--otlp-endpoint (env OTEL_EXPORTER_OTLP_ENDPOINT)."""
    add_setting_flag(
        parser, TracingSettings, "otlp_endpoint", "--otlp-endpoint",
        metavar="URL", help="export OpenTelemetry traces to this OTLP/HTTP receiver (base URL, "
        "e.g. http://collector:4318); off without it",
    )  # fmt: skip


def traces_url(endpoint: str) -> str:
    """The spans' URL for a base endpoint (`http://collector:4318` -> `.../v1/traces`)."""
    return endpoint.rstrip("/") + TRACES_PATH


class Tracing:
    """One process's tracer, exporting in batches to `<endpoint>/v1/traces`; its spans carry
    `service.name` and `comfy.process` (api, control-worker, gpu-worker:NAME, as the `process`
    label of the metrics)."""

    def __init__(self, endpoint: str, process: str, service_name: str = "comfy-temporal") -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.url = traces_url(endpoint)
        self.process = process
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "comfy.process": process})
        )
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self.url)))
        self.tracer: Tracer = self.provider.get_tracer("comfy-temporal")
        logger.info("%s: traces go to %s", process, self.url)

    def interceptor(self) -> TracingInterceptor:
        """For the process's Temporal client (`connect_temporal(interceptors=[...])`)."""
        from temporalio.contrib.opentelemetry import TracingInterceptor

        return TracingInterceptor(self.tracer)

    def force_flush(self) -> bool:
        """Export every ended span now (blocks); False when the receiver did not take them."""
        return self.provider.force_flush(SHUTDOWN_TIMEOUT_MILLIS)

    def shutdown(self) -> None:
        """Export what is left and stop (blocks up to the export timeout)."""
        self.provider.shutdown()


def start_tracing(settings: TracingSettings, process: str) -> Tracing | None:
    """The process's Tracing, or None when no endpoint is configured (the default)."""
    if not settings.otlp_endpoint:
        return None
    return Tracing(settings.otlp_endpoint, process, settings.otel_service_name)
