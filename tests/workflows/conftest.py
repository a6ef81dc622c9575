"""Fixtures for end-to-end generation tests: a private pool with its own manifests, a control
worker, and GPU workers (in-process GpuWorker objects) each driving a ComfyUI emulator process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.support import stack as stacks


@pytest.fixture
async def generation_stack(
    temporal_client: Client, tmp_path: Path
) -> AsyncIterator[stacks.GenerationStack]:
    """`sampled_image` on a pool of its own, a control worker on a queue of its own, and GPU
    workers on demand (`await stack.start_gpu_worker(name)`), all stopped at the end."""
    async with stacks.private_pool_stack(temporal_client, tmp_path, "test") as stack:
        yield stack
