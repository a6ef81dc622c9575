"""Batches a test starts through the API (POST /batches), read back and cleaned up afterwards."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from temporalio.api.batch.v1 import BatchOperationTermination
from temporalio.api.enums.v1 import BatchOperationState
from temporalio.api.workflowservice.v1 import (
    DescribeBatchOperationRequest,
    StartBatchOperationRequest,
)
from temporalio.client import Client

from temporal_workflows.names import SA_BATCH
from tests.support.waiting import poll_json, wait_for


class Batches:
    def __init__(self, http: httpx.AsyncClient, client: Client) -> None:
        self.http = http
        self.client = client
        self.ids: list[str] = []

    async def start(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /batches, which must accept it; returns the answer."""
        response = await self.http.post("/batches", json=body)
        assert response.status_code == 202, response.text
        accepted: dict[str, Any] = response.json()
        self.ids.append(accepted["batch_id"])
        return accepted

    async def read(self, batch_id: str, **query: Any) -> dict[str, Any]:
        response = await self.http.get(f"/batches/{batch_id}", params=query)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait(self, batch_id: str, condition: Any, timeout: float = 60) -> dict[str, Any]:
        """GET /batches/{id} until `condition(body)` holds."""
        return await poll_json(self.http, f"/batches/{batch_id}", condition, timeout, 0.1)

    async def cleanup(self) -> None:
        """Terminate what still runs of the batches (their workflows and items) in one server-side
        batch operation, so that no job is left waiting for the tests after."""
        if not self.ids:
            return
        listed = ", ".join(f"'{batch_id}'" for batch_id in self.ids)
        query = f"{SA_BATCH.name} IN ({listed}) AND ExecutionStatus = 'Running'"
        if not (await self.client.count_workflows(query)).count:
            return
        job_id = f"cleanup-{uuid.uuid4().hex[:8]}"
        await self.client.workflow_service.start_batch_operation(
            StartBatchOperationRequest(
                namespace=self.client.namespace,
                job_id=job_id,
                visibility_query=query,
                reason="test finished",
                termination_operation=BatchOperationTermination(),
            )
        )

        async def done() -> bool:
            job = await self.client.workflow_service.describe_batch_operation(
                DescribeBatchOperationRequest(namespace=self.client.namespace, job_id=job_id)
            )
            return job.state != BatchOperationState.BATCH_OPERATION_STATE_RUNNING

        await wait_for(done, f"batch operation {job_id} to end", 120, 0.2)
