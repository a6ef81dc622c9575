"""Async access to the ManifestRegistry for request handlers.

The registry stats (and on change re-reads) YAML and JSON files; that runs in a worker thread so the
event loop never blocks on the disk. The registry itself is thread-safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from activities.generation.prepare import prepared_prompt
from manifests.definitions import WorkflowManifest
from manifests.registry import ManifestRegistry, RegistrySnapshot
from manifests.render import render_prompt
from temporal_workflows.payloads import PreparedPrompt


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

    async def rendered(
        self, workflow_id: str, params: Mapping[str, Any]
    ) -> tuple[WorkflowManifest, PreparedPrompt]:
        """The manifest and its graph rendered with `params`, in one trip to the worker thread;
        raises UnknownWorkflow or ParamsInvalid (every bad field at once), as `validate`."""
        return await asyncio.to_thread(self._rendered, workflow_id, params)

    def _rendered(
        self, workflow_id: str, params: Mapping[str, Any]
    ) -> tuple[WorkflowManifest, PreparedPrompt]:
        manifest = self.registry.get(workflow_id)
        return manifest, _prepared(manifest, params)

    async def prepared(
        self, manifest: WorkflowManifest, params: Mapping[str, Any]
    ) -> PreparedPrompt:
        """The graph rendered with `params` (already checked), as the workflow's GPU step takes
        it; raises ParamsInvalid like `validate`."""
        return await asyncio.to_thread(_prepared, manifest, params)

    async def get(self, workflow_id: str) -> WorkflowManifest:
        return await asyncio.to_thread(self.registry.get, workflow_id)


def _prepared(manifest: WorkflowManifest, params: Mapping[str, Any]) -> PreparedPrompt:
    return prepared_prompt(manifest, render_prompt(manifest, params, revision=manifest.revision))
