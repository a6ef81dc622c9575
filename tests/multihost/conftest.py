"""Fixtures of the multi-host tests: five hosts as network namespaces on one bridge and the
service spread over them, for the module (skipped where namespaces are not permitted)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.multihost import MultiHostService, service_on_hosts
from tests.support.network_namespaces import namespaced_network, unavailable_reason

GPU_HOSTS = ("gpu-a", "gpu-b")


@pytest_asyncio.fixture(scope="module")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MultiHostService]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with namespaced_network("temporal", "api", *GPU_HOSTS, "s3") as network:
        hosts = network.hosts
        async with service_on_hosts(
            network,
            tmp_path_factory.mktemp("multihost"),
            temporal=hosts["temporal"],
            api=hosts["api"],
            s3=hosts["s3"],
            gpus=[hosts[name] for name in GPU_HOSTS],
        ) as running:
            yield running
