"""deploy/grafana's dashboard asks only for metrics the service exports (names collected from a
live scrape of the API and a GPU worker after a job), and covers what an operator asks; the
Prometheus scrape configurations in deploy/prometheus parse and name the expected jobs."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client

from tests.support.metrics import METRICS_API_KEY, MetricsStack, Scrape, scrape

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "comfy-temporal.json"
COMPOSE_SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"
KUBERNETES_SCRAPE = DEPLOY / "prometheus" / "prometheus-kubernetes.yml"
WORKER_METRICS_PORT = "9464"  # COMFY_METRICS_PORT in the compose and Kubernetes examples

# Words of PromQL that are not metric names (functions are recognised by their parenthesis).
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_KEYWORDS |= {"offset", "and", "or", "unless", "inf", "nan"}
# What the dashboard must show (the list): one metric each at least.
REQUIRED = {
    "comfy_generations_total",  # jobs by status
    "comfy_generation_duration_seconds_bucket",
    "comfy_queue_wait_seconds_bucket",  # queue wait percentiles
    "comfy_execution_seconds_bucket",  # execution percentiles
    "comfy_backlog",  # backlog per pool
    "comfy_jobs_in_progress",  # GPU busy per worker
    "comfy_comfyui_up",
    "comfy_comfyui_restarts_total",  # restarts and OOMs
    "comfy_oom_total",
    "comfy_node_seconds_bucket",  # node seconds by class_type
    "comfy_webhook_deliveries_total",
    "comfy_http_request_duration_seconds_bucket",  # HTTP latency
    "comfy_http_requests_total",
    "comfy_gpu_memory_free_bytes",
}
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def dashboard_queries() -> tuple[list[str], list[str]]:
    """The PromQL of every panel, and the queries of the template variables."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]
    variables = [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    return exprs, variables


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers left once strings, label matchers,
    ranges and label lists are removed, other than functions and keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w$.])[A-Za-z_:][\w:]*", expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function
        if match.group() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def exported_series(found: Scrape) -> set[str]:
    """Every series name the scrape's families give Prometheus, sampled yet or not."""
    names = {s.name for s in found.samples}
    for family in found.families.values():
        names |= {family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",))}
    return names


def test_metric_names_are_read_from_promql():
    expr = (
        'sum by (le, pool) (rate(comfy_queue_wait_seconds_bucket{pool=~"$pool"}[$__rate_interval]))'
        " / ignoring (class_type) group_left sum(comfy_backlog) * on (worker) comfy_comfyui_up"
    )
    assert metric_names(expr) == {
        "comfy_queue_wait_seconds_bucket",
        "comfy_backlog",
        "comfy_comfyui_up",
    }


async def test_the_dashboard_asks_only_for_metrics_the_service_exports(
    metrics_stack: MetricsStack, temporal_client: Client
):
    stack = metrics_stack
    async with stack.api() as http:
        body = {"workflow_id": "sampled_image", "params": {}, "callback_url": stack.webhooks.url}
        response = await http.post("/generate", json=body)
        assert response.status_code == 202, response.text
        handle = temporal_client.get_workflow_handle(response.json()["task_id"])
        await asyncio.wait_for(handle.result(), 60)
    api = await scrape(f"{stack.api_url}/metrics", **{"X-API-Key": METRICS_API_KEY})
    gpu = await scrape(stack.gpu_metrics_url)
    exported = exported_series(api) | exported_series(gpu)

    exprs, variables = dashboard_queries()
    referenced = set().union(*(metric_names(e) for e in exprs))
    for query in variables:
        match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
        assert match, f"unexpected variable query {query!r}"
        referenced.add(match.group(1))
    assert REQUIRED <= referenced, f"the dashboard lacks {sorted(REQUIRED - referenced)}"
    assert not referenced - exported, f"not exported: {sorted(referenced - exported)}"


def scrape_jobs(path: Path) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(path.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_the_compose_scrape_configuration_reaches_the_api_with_a_key_and_every_worker():
    jobs = scrape_jobs(COMPOSE_SCRAPE)
    assert set(jobs) == {"comfy-api", "comfy-control-worker", "comfy-gpu-workers"}
    api = jobs["comfy-api"]
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    assert api["authorization"]["type"] == "Bearer" and api["authorization"]["credentials_file"]
    for name in ("comfy-control-worker", "comfy-gpu-workers"):
        targets = [t for c in jobs[name]["static_configs"] for t in c["targets"]]
        assert targets and all(t.endswith(f":{WORKER_METRICS_PORT}") for t in targets)
        assert "authorization" not in jobs[name]


def test_the_kubernetes_scrape_configuration_finds_pods_by_their_annotations():
    jobs = scrape_jobs(KUBERNETES_SCRAPE)
    assert set(jobs) == {"comfy-api", "comfy-workers"}
    kept = {}
    for name, job in jobs.items():
        assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
        keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        assert [r["source_labels"] for r in keep] == [
            ["__meta_kubernetes_pod_annotation_comfy_temporal_metrics"]
        ]
        kept[name] = keep[0]["regex"]
    assert kept == {"comfy-api": "api", "comfy-workers": "worker"}
    assert jobs["comfy-api"]["authorization"]["credentials_file"]
    assert "authorization" not in jobs["comfy-workers"]
