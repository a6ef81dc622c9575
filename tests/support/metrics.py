"""Reading a Prometheus endpoint the way Prometheus does: scrape over HTTP, parse with
prometheus_client's own parser (which fails on anything malformed), look samples up by labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.emulator import EmulatorHandle
from tests.support.webhooks import WebhookReceiver

METRICS_API_KEY = "metrics-test-key"


@dataclass
class MetricsStack:
    """The metrics suite's API (with its control worker), one GPU worker on a private pool driving
    a ComfyUI emulator, each serving /metrics, and a webhook receiver."""

    api_url: str
    gpu_metrics_url: str
    pool: str
    worker: str
    emulator: EmulatorHandle
    webhooks: WebhookReceiver

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers={"X-API-Key": METRICS_API_KEY},
            timeout=30,
            trust_env=False,
        )


class Scrape:
    """Every sample of one scrape; `value(name, **labels)` is the one sample whose labels include
    those given (None when there is none, an error when several match)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: list[Sample] = [s for f in self.families.values() for s in f.samples]

    def matching(self, name: str, **labels: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name and _includes(s.labels, labels)]

    def value(self, name: str, **labels: str) -> float | None:
        found = self.matching(name, **labels)
        assert len(found) <= 1, f"{len(found)} samples of {name} match {labels}: {found}"
        return found[0].value if found else None

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.matching(name, **labels))


def _includes(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


async def scrape(url: str, **headers: str) -> Scrape:
    async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
        response = await http.get(url, headers=headers)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return Scrape(response.text)
