"""Connecting to Temporal the standard way, for the API, the workers and the CLI.

Settings come from `temporalio.envconfig`: the environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE) and the optional TOML profile file; explicit
arguments win. Every client uses the Pydantic data converter, because our payloads are Pydantic.
"""

from __future__ import annotations

import os

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


async def connect_temporal(
    address: str | None = None,
    namespace: str | None = None,
    *,
    identity: str | None = None,
    runtime: Runtime | None = None,
) -> Client:
    """A Temporal client configured from the environment, with explicit overrides."""
    config = ClientConfig.load_client_connect_config(profile=os.environ.get("TEMPORAL_PROFILE"))
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.setdefault("namespace", DEFAULT_NAMESPACE)
    extra: dict = {}
    if identity:
        extra["identity"] = identity
    if runtime is not None:
        extra["runtime"] = runtime
    return await Client.connect(**config, data_converter=pydantic_data_converter, **extra)
