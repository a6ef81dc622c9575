"""Compiled code of the workflow modules, kept in memory for the workflow sandbox.

The sandbox imports a workflow's module afresh for every workflow run, so every run executes the
module's code again and the sandbox keeps checking it (temporal-notes.md §5.1). Python normally
takes that code from the module's `__pycache__/*.pyc`; where none can be used
(PYTHONDONTWRITEBYTECODE, a read-only install) every import compiled the source file again:
about 5 ms of the control worker's CPU in each generation's first workflow task (py-spy during
bench/overhead.py).

`install_workflow_code_cache` puts a finder first on `sys.meta_path` that hands imports of the
given modules a loader compiling each source file once per process, and again when the file
changes. Only the compilation is shared: each import still runs the module's code in the sandbox,
and a code object is immutable, so no state passes from one run to the next.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from types import CodeType, ModuleType

# source path -> ((mtime_ns, size) of the file compiled, its code)
_compiled: dict[str, tuple[tuple[int, int], CodeType]] = {}
_compiled_lock = threading.Lock()


class _CompileOnceLoader(importlib.machinery.SourceFileLoader):
    """A SourceFileLoader that reuses the code it compiled while the file is unchanged."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        stat = os.stat(path)
        version = (stat.st_mtime_ns, stat.st_size)
        with _compiled_lock:
            cached = _compiled.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        code = super().get_code(fullname)
        if code is None:  # pragma: no cover - a source file always compiles to code or raises
            raise ImportError(f"no code for {fullname}", name=fullname)
        with _compiled_lock:
            _compiled[path] = (version, code)
        return code


class WorkflowCodeFinder(importlib.abc.MetaPathFinder):
    """Finds the named modules the usual way, then gives their spec a compile-once loader."""

    def __init__(self, module_names: Iterable[str]) -> None:
        self.module_names = frozenset(module_names)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.module_names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec
        spec.loader = _CompileOnceLoader(spec.loader.name, spec.loader.path)
        return spec


def install_workflow_code_cache(module_names: Iterable[str]) -> WorkflowCodeFinder:
    """Compile the given modules once per process from now on (idempotent per set of names)."""
    wanted = frozenset(module_names)
    for finder in sys.meta_path:
        if isinstance(finder, WorkflowCodeFinder) and wanted <= finder.module_names:
            return finder
    finder = WorkflowCodeFinder(wanted)
    sys.meta_path.insert(0, finder)
    return finder
