"""A fresh Temporal namespace on the session's dev server, for tests that count what exists."""

from __future__ import annotations

import asyncio
import uuid

from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from api.cli.setup import register_search_attributes


async def fresh_namespace(client: Client, prefix: str) -> Client:
    """A client of a new namespace "<prefix>-<hex>" with our search attributes registered."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    target = client.service_client.config.target_host
    async with asyncio.timeout(30):  # the frontend learns of a new namespace after a moment
        while True:
            try:
                fresh = await Client.connect(
                    target, namespace=namespace, data_converter=pydantic_data_converter
                )
                await register_search_attributes(fresh)
                return fresh
            except Exception:
                await asyncio.sleep(0.2)
