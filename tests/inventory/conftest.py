"""Fixtures of the inventory suite: an API with its control worker and two GPU workers whose
emulators hold different model files, shared by the module's tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.inventory import comfyui_base, model_registry, wait_for_inventory
from tests.support.stack import GenerationStack, generation_stack

# Worker A and worker B share one checkpoint; each has one checkpoint and one LoRA of its own.
MODELS_A = {
    "checkpoints": ["common.safetensors", "alpha-v1.safetensors"],
    "loras": ["style-a.safetensors"],
}
MODELS_B = {
    "checkpoints": ["common.safetensors", "sub/beta-xl.safetensors"],
    "loras": ["style-b.safetensors"],
}


@pytest_asyncio.fixture(scope="module")
async def inventory_stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    base_dir = tmp_path_factory.mktemp("inventory")
    pool = f"inv-{uuid.uuid4().hex[:8]}"
    registry = model_registry(base_dir, pool, idle_pool=f"{pool}-idle")
    async with generation_stack(temporal_client, base_dir, registry, pool=pool) as stack:
        for name, files in (("gpu-a", MODELS_A), ("gpu-b", MODELS_B)):
            models = comfyui_base(base_dir / f"models-{name}", files)
            await stack.start_gpu_worker(name, extra_args=["--base-directory", str(models)])
        await wait_for_inventory(temporal_client, pool, "alpha-v1.safetensors", "worker A")
        await wait_for_inventory(temporal_client, pool, "sub/beta-xl.safetensors", "worker B")
        yield stack


@pytest_asyncio.fixture
async def http(inventory_stack: GenerationStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=inventory_stack.url, timeout=30) as client:
        yield client
