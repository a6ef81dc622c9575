"""Which models a GPU worker's ComfyUI holds loaded, as the worker can tell from the prompts it
submitted: ComfyUI keeps the loader nodes' outputs of its latest prompts in its node cache, and
with them the models, until a prompt with other models, memory pressure, `/free` or an
out-of-memory error drops them (docs/comfyui-protocol.md §4.12). Reported with the inventory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporal_workflows.inventory import LoaderChoices
from temporal_workflows.routing import loader_values

# How many prompts' model sets ComfyUI keeps by default: its classic cache keeps the node
# outputs of the latest prompt only (§4.12).
DEFAULT_MODEL_SETS_KEPT = 1


class LoadedModels:
    """The model files of the last `kept` distinct model sets this worker's ComfyUI was given,
    newest first; `changed` is called when that set changes (to report it soon)."""

    def __init__(
        self, kept: int = DEFAULT_MODEL_SETS_KEPT, changed: Callable[[], None] | None = None
    ) -> None:
        self.kept = max(1, kept)
        self.changed = changed
        self._sets: list[frozenset[tuple[str, str, str]]] = []

    def submitted(self, prompt: dict[str, Any], loaders: LoaderChoices | None) -> bool:
        """ComfyUI got `prompt`: its loader nodes (the classes and inputs `loaders`, the worker's
        inventory, lists) load their files, which then stay loaded for the next prompts. True
        when it names a file that was not loaded (ComfyUI loads it now)."""
        if not loaders:
            return False
        found = loader_values(prompt, loaders)
        if not found:
            return False
        models = frozenset(found)
        held: set[tuple[str, str, str]] = set().union(*self._sets)
        loads = not found <= held
        before = self.loaded()
        self._sets = [models, *(s for s in self._sets if s != models)][: self.kept]
        if self.loaded() != before:
            self._notify()
        return loads

    def clear(self) -> None:
        """ComfyUI dropped every model (restarted, out of memory, /free)."""
        if self._sets:
            self._sets = []
            self._notify()

    def loaded(self) -> LoaderChoices:
        found: LoaderChoices = {}
        for models in self._sets:
            for class_type, input_name, value in models:
                names = found.setdefault(class_type, {}).setdefault(input_name, [])
                if value not in names:
                    names.append(value)
        for inputs in found.values():
            for names in inputs.values():
                names.sort()
        return found

    def _notify(self) -> None:
        if self.changed is not None:
            self.changed()
