"""A process's Prometheus endpoint: `--metrics-port` of the workers, and the Temporal SDK's own
metrics (`temporal_*`), which every process folds into its one scrape target.

The SDK's metrics come from its Rust core, whose Prometheus exporter serves them on a port of its
own; `TemporalSdkMetrics` runs that exporter on a free loopback port and re-exposes what it serves
through the process's registry, with a `process` label naming the process.
"""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Iterable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Metric, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from activities.workers.logs import temporal_core_logging
from activities.workers.settings import MetricsSettings, add_setting_flag

logger = logging.getLogger(__name__)

EXPORTER_TIMEOUT = 2.0


def add_metrics_flags(parser: argparse.ArgumentParser) -> None:
    """--metrics-port (env COMFY_METRICS_PORT) and --metrics-host (env COMFY_METRICS_HOST)."""
    add_setting_flag(
        parser, MetricsSettings, "metrics_port", "--metrics-port",
        type=int, metavar="PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics",
    )  # fmt: skip
    add_setting_flag(
        parser, MetricsSettings, "metrics_host", "--metrics-host",
        metavar="HOST", help="address of the metrics endpoint; 0.0.0.0 lets a Prometheus on "
        "another host scrape it",
    )  # fmt: skip


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TemporalSdkMetrics(Collector):
    """A Temporal runtime with a Prometheus exporter on a loopback port; connect the process's
    client with `runtime`, register this in the process's registry, and every scrape of it
    carries the SDK's metrics (worker slots, poll and schedule-to-start latencies, RPCs)."""

    def __init__(self, process: str) -> None:
        self.process = process
        exporter_address = f"127.0.0.1:{_free_loopback_port()}"
        self.exporter_url = f"http://{exporter_address}/metrics"
        self.runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=exporter_address,
                    # Named and measured as Prometheus clients do (counters end in _total,
                    # durations in seconds), like the comfy_* metrics beside them.
                    counters_total_suffix=True,
                    durations_as_seconds=True,
                ),
                global_tags={"process": process},
                # The core's own lines go through this process's logging, so they take its
                # format (one JSON object per line with --log-format json) rather than the
                # core's text on stderr.
                logging=temporal_core_logging(),
            )
        )

    def describe(self) -> list[Metric]:
        return []  # collected only when scraped

    def collect(self) -> Iterable[Any]:
        try:
            response = httpx.get(self.exporter_url, timeout=EXPORTER_TIMEOUT, trust_env=False)
            response.raise_for_status()
        except httpx.HTTPError as err:
            logger.warning("Temporal SDK metrics unavailable: %s", err)
            return []
        return list(text_string_to_metric_families(response.text))


class MetricsEndpoint:
    """A running metrics HTTP server (its own thread); `close()` stops it."""

    def __init__(self, url: str, server: Any) -> None:
        self.url = url
        self._server = server

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve `registry` at http://host:port/metrics from a thread of its own, so a scrape never
    waits for the event loop (and collectors may block on their own HTTP calls)."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/metrics"
    logger.info("metrics at %s", url)
    return MetricsEndpoint(url, server)
