"""Fixtures of the model download tests: a loopback server of model files, and one generation
stack whose GPU worker downloads into a models directory its emulator reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client

from tests.support.manifests import write_checkpoint_manifests
from tests.support.model_files import ModelServer, model_server
from tests.support.stack import GenerationStack, generation_stack, unique


@pytest_asyncio.fixture
async def models() -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    base = tmp_path_factory.mktemp("models-stack")
    # The model server is on loopback: allowed here, in the API and on the GPU worker, as the
    # image input tests allow theirs.
    async with generation_stack(
        temporal_client, base, write_checkpoint_manifests(base), allow_private_image_urls=True
    ) as running:
        await running.start_gpu_worker(
            unique("models-gpu"), model_settings={"allow_private_urls": True}
        )
        yield running
