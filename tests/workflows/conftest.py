"""Fixtures for end-to-end generation tests: a private pool with its own manifests, a control
worker, and GPU workers (in-process GpuWorker objects) each driving a ComfyUI emulator process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.support import stack as stacks
from tests.support.manifests import valid_registry, write_sampled_image_manifests


@pytest.fixture
async def generation_stack(
    temporal_client: Client, tmp_path: Path
) -> AsyncIterator[stacks.GenerationStack]:
    """`sampled_image` on a pool of its own, a control worker on a queue of its own, and GPU
    workers on demand (`await stack.start_gpu_worker(name)`), all stopped at the end."""
    pool = f"test-{uuid.uuid4().hex[:10]}"
    registry = valid_registry(*write_sampled_image_manifests(tmp_path, pool))
    # Every job really executes (real jobs differ by seed anyway); caching is not our topic.
    async with stacks.generation_stack(
        temporal_client,
        tmp_path,
        registry,
        api=False,
        control_worker="own",
        pool=pool,
        emulator_args=["--cache-none"],
    ) as stack:
        yield stack
