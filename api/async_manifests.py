"""Async access to the ManifestRegistry for request handlers.

The registry stats (and on change re-reads) YAML and JSON files; that runs in a worker thread so the
event loop never blocks on the disk. The registry itself is thread-safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from manifests.definitions import WorkflowManifest
from manifests.registry import ManifestRegistry, RegistrySnapshot


class AsyncManifestRegistry:
    def __init__(self, registry: ManifestRegistry) -> None:
        self.registry = registry

    async def snapshot(self) -> RegistrySnapshot:
        return await asyncio.to_thread(self.registry.snapshot)

    async def validate(self, workflow_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in; raises UnknownWorkflow or ParamsInvalid (every bad field at once)."""
        return await asyncio.to_thread(self.registry.validate, workflow_id, params)

    def _checked(
        self, workflow_id: str, params: Mapping[str, Any]
    ) -> tuple[WorkflowManifest, dict[str, Any]]:
        return self.registry.get(workflow_id), self.registry.validate(workflow_id, params)

    async def checked(
        self, workflow_id: str, params: Mapping[str, Any]
    ) -> tuple[WorkflowManifest, dict[str, Any]]:
        """The manifest and the validated params, in one trip to the worker thread."""
        return await asyncio.to_thread(self._checked, workflow_id, params)

    async def get(self, workflow_id: str) -> WorkflowManifest:
        return await asyncio.to_thread(self.registry.get, workflow_id)
