"""Fixtures of the routing suite: two GPU workers without prefetch whose emulators charge for
loading a checkpoint and keep one loaded, an API and a control worker that wait 2 s for a warm
GPU."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.client import Client

from activities.workers.settings import RoutingSettings
from tests.support.routing import emulator_load_args, models_base, routed_registry
from tests.support.stack import GenerationStack, generation_stack

AFFINITY_WAIT = 2.0
WORKERS = ("gpu-1", "gpu-2")


@pytest_asyncio.fixture(scope="module")
async def routing_stack(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GenerationStack]:
    base_dir = tmp_path_factory.mktemp("routing")
    pool = f"route-{uuid.uuid4().hex[:8]}"
    async with generation_stack(
        temporal_client,
        base_dir,
        routed_registry(base_dir, pool),
        pool=pool,
        # The API routes each job's first try at submit; its control worker, in the same
        # process, the others (with the same Router).
        routing=RoutingSettings(routing="affinity", affinity_wait_seconds=AFFINITY_WAIT),
    ) as stack:
        for name in WORKERS:
            base = models_base(base_dir / f"comfyui-{name}")
            # A load costs 1 s (0.1 GB at 10 s/GB); every job runs (no node cache).
            args = ["--cache-none", *emulator_load_args(base, seconds_per_gb=10.0)]
            # Without prefetch a busy GPU has no room: routed jobs wait for it in Temporal.
            await stack.start_gpu_worker(name, extra_args=args, model_settings={"prefetch": False})
        yield stack
