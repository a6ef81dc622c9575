"""`comfy-temporal setup`: prepare a Temporal cluster (or Temporal Cloud namespace) for the service.

Registers the search attributes the workflows set and the Web UI filters on (ComfyWorkflow,
ComfyPool, ComfyWorker, ComfyBatch, all Keyword) through the operator service. Running it again is
harmless: attributes already there are left alone. `comfy-temporal dev` registers them by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.workers.cli import add_temporal_flags
from activities.workers.settings import TemporalSettings, settings_from_args
from activities.workers.temporal_client import connect_temporal, exit_now
from temporal_workflows.names import SEARCH_ATTRIBUTES

_KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD


class SetupError(Exception):
    """A problem the operator must fix (wrong type already registered, no permission, ...)."""


@dataclass
class SetupReport:
    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)


async def registered_search_attributes(
    client: Client,
) -> dict[str, IndexedValueType.ValueType]:
    """Custom search attributes of the client's namespace: name -> IndexedValueType."""
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return dict(answer.custom_attributes)


async def register_search_attributes(client: Client) -> SetupReport:
    """Adds our Keyword search attributes that are missing; idempotent."""
    wanted = [key.name for key in SEARCH_ATTRIBUTES]
    existing = await registered_search_attributes(client)
    report = SetupReport()
    wrong = [
        f"{name} is registered as {IndexedValueType.Name(existing[name])}, not KEYWORD"
        for name in wanted
        if name in existing and existing[name] != _KEYWORD
    ]
    if wrong:
        raise SetupError("; ".join(wrong) + " (remove it, or use another namespace)")
    report.present = [name for name in wanted if name in existing]
    missing = [name for name in wanted if name not in existing]
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=client.namespace,
                    search_attributes={name: _KEYWORD for name in missing},
                )
            )
        except RPCError as err:
            # Someone else registered them meanwhile: that is the outcome we want.
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
        report.added = missing
    return report


async def _setup(settings: TemporalSettings) -> int:
    try:
        client = await connect_temporal(settings.temporal_address, settings.temporal_namespace)
    except RuntimeError as err:  # the SDK raises RuntimeError when it cannot connect
        print(f"error: cannot connect to Temporal: {err}", file=sys.stderr)
        return 1
    try:
        report = await register_search_attributes(client)
    except SetupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except RPCError as err:
        print(
            f"error: Temporal refused to register search attributes in namespace "
            f"'{client.namespace}': {err.message} ({err.status.name})",
            file=sys.stderr,
        )
        return 1
    where = f"namespace '{client.namespace}' at {client.service_client.config.target_host}"
    for name in report.added:
        print(f"registered search attribute {name} (Keyword) in {where}")
    for name in report.present:
        print(f"search attribute {name} already registered in {where}")
    return 0


def setup_command(args: argparse.Namespace) -> int:
    exit_now(asyncio.run(_setup(settings_from_args(TemporalSettings, args))))


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `setup`."""
    setup = subparsers.add_parser(
        "setup",
        help="register the search attributes on a Temporal cluster (idempotent)",
        description="Register the Keyword search attributes ComfyWorkflow, ComfyPool, "
        "ComfyWorker and ComfyBatch in a namespace, so workflows can set them and the Web UI "
        "can filter on them. Connection settings come from the environment like every command "
        "(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, "
        "TEMPORAL_PROFILE). Safe to run again.",
    )
    add_temporal_flags(setup)
    setup.set_defaults(func=setup_command)
