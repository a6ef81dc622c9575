"""`comfy-temporal setup` registers our search attributes on a cluster; running it again is fine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from temporal_workflows.names import SEARCH_ATTRIBUTES

WANTED = {key.name for key in SEARCH_ATTRIBUTES}


async def _setup(address: str, namespace: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": namespace}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "api.cli.main", "setup"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def _custom_attributes(client: Client, namespace: str) -> dict[str, int]:
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(answer.custom_attributes)


async def _fresh_namespace(client: Client) -> str:
    namespace = f"setup-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace,
            workflow_execution_retention_period=Duration(
                seconds=int(timedelta(days=1).total_seconds())
            ),
        )
    )
    async with asyncio.timeout(30):  # the frontend learns of new namespaces after a moment
        while True:
            try:
                await _custom_attributes(client, namespace)
                return namespace
            except RPCError:
                await asyncio.sleep(0.1)


async def test_setup_registers_the_keyword_attributes_in_a_fresh_namespace(
    temporal_client: Client, temporal_address: str
) -> None:
    namespace = await _fresh_namespace(temporal_client)
    assert not WANTED & set(await _custom_attributes(temporal_client, namespace))

    completed = await _setup(temporal_address, namespace)

    assert completed.returncode == 0, completed.stderr
    attributes = await _custom_attributes(temporal_client, namespace)
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert {name: attributes.get(name) for name in WANTED} == dict.fromkeys(WANTED, keyword)
    for name in WANTED:
        assert f"registered search attribute {name} (Keyword)" in completed.stdout


async def test_setup_run_again_changes_nothing_and_succeeds(
    temporal_client: Client, temporal_address: str
) -> None:
    before = await _custom_attributes(temporal_client, "default")
    assert WANTED <= set(before)  # the session's dev server registered them at start

    completed = await _setup(temporal_address, "default")

    assert completed.returncode == 0, completed.stderr
    assert await _custom_attributes(temporal_client, "default") == before
    for name in WANTED:
        assert f"search attribute {name} already registered" in completed.stdout


async def test_setup_without_a_reachable_temporal_exits_1_with_a_message() -> None:
    completed = await _setup("127.0.0.1:1", "default")
    assert completed.returncode == 1
    assert completed.stderr.startswith("error: cannot connect to Temporal")
    assert "Traceback" not in completed.stderr
