"""Connecting to Temporal the standard way, for the API, the workers and the CLI; and leaving a
process that had a client (`exit_now`).

Settings come from `temporalio.envconfig`: the environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE) and the optional TOML profile file; explicit
arguments win. Every client uses the Pydantic data converter, because our payloads are Pydantic.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

if TYPE_CHECKING:
    from activities.workers.settings import TemporalSettings
    from activities.workers.tracing import Tracing

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


async def connect_temporal(
    address: str | None = None,
    namespace: str | None = None,
    *,
    identity: str | None = None,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """A Temporal client configured from the environment, with explicit overrides;
    `interceptors` also apply to the Workers built on it (the tracing one does)."""
    # envconfig picks the profile itself (TEMPORAL_PROFILE, else "default").
    config = ClientConfig.load_client_connect_config()
    if address:
        config["target_host"] = address
    if namespace:
        config["namespace"] = namespace
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.setdefault("namespace", DEFAULT_NAMESPACE)
    extra: dict[str, Any] = {}
    if identity:
        extra["identity"] = identity
    if runtime is not None:
        extra["runtime"] = runtime
    return await Client.connect(
        **config,
        data_converter=pydantic_data_converter,
        interceptors=interceptors,
        **extra,
    )


async def connect_process_client(
    settings: TemporalSettings,
    *,
    runtime: Runtime | None,
    tracing: Tracing | None,
    identity: str | None = None,
) -> Client:
    """A service process's client: where its settings say, on its runtime (the process's metrics),
    traced when tracing is on."""
    return await connect_temporal(
        settings.temporal_address,
        settings.temporal_namespace,
        identity=identity,
        runtime=runtime,
        interceptors=[tracing.interceptor()] if tracing else [],
    )


def exit_now(code: int) -> NoReturn:
    """End the command with `code` without the interpreter's shutdown: a finished Temporal client
    can abort it (sdk-python#300, temporal-notes.md §2), which would turn a clean exit into 134."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)
