"""Fixtures of the observability suite: the API with its embedded control worker and one GPU
worker on an emulator, each serving /metrics (tests/support/metrics.py), without and with traces
exported to a loopback OTLP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.emulator import StartEmulator
from tests.support.loopback_http import serve_on_loopback
from tests.support.metrics import MetricsStack, observed_stack
from tests.support.otlp import OtlpReceiver


@pytest.fixture
async def metrics_stack(
    temporal_address: str,
    start_emulator: StartEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[MetricsStack]:
    monkeypatch.setenv("COMFY_ALLOW_PRIVATE_CALLBACK_URLS", "1")
    async with observed_stack(temporal_address, start_emulator, tmp_path) as stack:
        yield stack


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[tuple[OtlpReceiver, str]]:
    """A trace receiver on loopback and its base URL (what OTEL_EXPORTER_OTLP_ENDPOINT takes)."""
    receiver = OtlpReceiver()
    async with serve_on_loopback(receiver.app()) as port:
        yield receiver, f"http://127.0.0.1:{port}"


@pytest.fixture
async def traced_stack(
    temporal_address: str,
    start_emulator: StartEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    otlp_receiver: tuple[OtlpReceiver, str],
) -> AsyncIterator[MetricsStack]:
    monkeypatch.setenv("COMFY_ALLOW_PRIVATE_CALLBACK_URLS", "1")
    _, endpoint = otlp_receiver
    async with observed_stack(
        temporal_address, start_emulator, tmp_path, otlp_endpoint=endpoint
    ) as stack:
        yield stack
