"""A GPU worker's inventory follows its ComfyUI's model folders: a file copied in is reported
at the next check, and the worker's names go when it stops; a worker that goes silent expires."""

from __future__ import annotations

from pathlib import Path

import httpx
from temporalio.client import Client

from activities.workers.inventory import query_inventory
from temporal_workflows.inventory import InventoryReport, PoolInventory, inventory_digest
from temporal_workflows.names import (
    INVENTORY_QUERY,
    POOL_INVENTORY_WORKFLOW,
    REPORT_INVENTORY_SIGNAL,
    inventory_workflow_id,
)
from tests.support.inventory import (
    MODEL_WORKFLOW_ID,
    add_model_file,
    comfyui_base,
    wait_for_inventory,
)
from tests.support.stack import GenerationStack, unique
from tests.support.waiting import wait_for


async def test_a_model_file_copied_in_is_reported(
    inventory_stack: GenerationStack, temporal_client: Client, tmp_path: Path
) -> None:
    base = comfyui_base(tmp_path / "models", {"checkpoints": ["gamma.safetensors"]})
    worker = await inventory_stack.start_gpu_worker(
        unique("gpu-c"), inventory_interval=0.5, extra_args=["--base-directory", str(base)]
    )
    try:
        await wait_for_inventory(temporal_client, inventory_stack.pool, "gamma.safetensors", "C")
        add_model_file(base, "checkpoints", "delta.safetensors")
        inventory = await wait_for_inventory(
            temporal_client, inventory_stack.pool, "delta.safetensors", "C's new file"
        )
        assert inventory.worker_loaders(worker.name) is not None
    finally:
        inventory_stack.gpu_workers.remove(worker)
        await worker.shutdown()


async def test_a_new_inventory_workflow_learns_the_whole_inventory_from_keep_alives(
    inventory_stack: GenerationStack, temporal_client: Client, tmp_path: Path
) -> None:
    pool = unique("fresh")
    base = comfyui_base(tmp_path / "models", {"checkpoints": ["eta.safetensors"]})
    inventory_stack.pool, shared_pool = pool, inventory_stack.pool
    try:
        worker = await inventory_stack.start_gpu_worker(
            unique("gpu-e"), inventory_interval=0.5, extra_args=["--base-directory", str(base)]
        )
    finally:
        inventory_stack.pool = shared_pool
    try:
        await wait_for_inventory(temporal_client, pool, "eta.safetensors", "E's report")
        handle = temporal_client.get_workflow_handle(inventory_workflow_id(pool))
        lost_run = (await handle.describe()).run_id
        await handle.terminate("lost")

        # Only keep-alives follow (the files did not change); the run they start asks for more.
        async def new_run_knows_it() -> bool:
            description = await handle.describe()
            if description.run_id == lost_run:
                return False
            inventory = await handle.query(INVENTORY_QUERY, result_type=PoolInventory)
            return inventory.worker_loaders(worker.name) is not None

        await wait_for(new_run_knows_it, "a new run to hold E's whole inventory", 15)
    finally:
        inventory_stack.gpu_workers.remove(worker)
        await worker.shutdown()
        await temporal_client.get_workflow_handle(inventory_workflow_id(pool)).terminate("over")


async def test_a_stopped_worker_takes_its_names_with_it(
    inventory_stack: GenerationStack, temporal_client: Client, tmp_path: Path
) -> None:
    base = comfyui_base(tmp_path / "models", {"checkpoints": ["epsilon.safetensors"]})
    worker = await inventory_stack.start_gpu_worker(
        unique("gpu-d"), extra_args=["--base-directory", str(base)]
    )
    pool = inventory_stack.pool
    await wait_for_inventory(temporal_client, pool, "epsilon.safetensors", "D's report")
    inventory_stack.gpu_workers.remove(worker)
    await worker.shutdown()
    inventory = await wait_for_inventory(temporal_client, pool, "!epsilon.safetensors", "D gone")
    assert worker.name not in inventory.workers
    async with httpx.AsyncClient(base_url=inventory_stack.url) as http:

        async def refused() -> bool:
            response = await http.post(
                "/generate",
                json={
                    "workflow_id": MODEL_WORKFLOW_ID,
                    "params": {"checkpoint": "epsilon.safetensors"},
                },
            )
            return response.status_code == 422

        await wait_for(refused, "the API to refuse the stopped worker's checkpoint", 15)


async def test_a_worker_that_goes_silent_expires(
    inventory_stack: GenerationStack, temporal_client: Client
) -> None:
    pool = unique("silent")
    loaders = {"CheckpointLoaderSimple": {"ckpt_name": ["zeta.safetensors"]}}
    report = InventoryReport(
        worker="crashed", digest=inventory_digest(loaders), loaders=loaders, valid_for_seconds=1
    )
    await temporal_client.start_workflow(
        POOL_INVENTORY_WORKFLOW,
        PoolInventory(pool=pool),
        id=inventory_workflow_id(pool),
        task_queue=inventory_stack.control_queue,
        start_signal=REPORT_INVENTORY_SIGNAL,
        start_signal_args=[report],
    )

    async def expired() -> PoolInventory | None:
        inventory = await query_inventory(temporal_client, pool)
        return inventory if inventory is not None and not inventory.workers else None

    inventory = await wait_for(expired, "the silent worker to expire", 15)
    assert inventory.inventories == {}
    await temporal_client.get_workflow_handle(inventory_workflow_id(pool)).terminate("test over")
