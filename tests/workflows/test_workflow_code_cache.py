"""The compile-once loader the control worker uses for workflow modules
(activities/workers/workflow_code_cache.py)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.workers.workflow_code_cache import WorkflowCodeFinder


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path for a throwaway module, and a finder that serves only that module."""
    sys.path.insert(0, str(tmp_path))
    finder = WorkflowCodeFinder(["cached_wf_module"])
    sys.meta_path.insert(0, finder)
    yield tmp_path
    sys.meta_path.remove(finder)
    sys.path.remove(str(tmp_path))
    sys.modules.pop("cached_wf_module", None)
    importlib.invalidate_caches()


def fresh_import() -> object:
    """Import the module anew, the way the sandbox does for every workflow run."""
    sys.modules.pop("cached_wf_module", None)
    importlib.invalidate_caches()
    return importlib.import_module("cached_wf_module")


def test_a_second_import_reuses_the_compiled_code_but_runs_the_module_again(module_dir: Path):
    (module_dir / "cached_wf_module.py").write_text("STATE = []\ndef answer():\n    return 1\n")
    first = fresh_import()
    first.STATE.append("changed by a run")  # type: ignore[attr-defined]
    second = fresh_import()
    assert second is not first
    assert second.answer.__code__ is first.answer.__code__  # type: ignore[attr-defined]
    assert second.STATE == []  # type: ignore[attr-defined]


def test_a_changed_source_file_is_compiled_again(module_dir: Path):
    source = module_dir / "cached_wf_module.py"
    source.write_text("def answer():\n    return 1\n")
    assert fresh_import().answer() == 1  # type: ignore[attr-defined]
    source.write_text("def answer():\n    return 22\n")
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert fresh_import().answer() == 22  # type: ignore[attr-defined]


def test_modules_it_was_not_given_are_left_to_the_usual_finders(module_dir: Path):
    finder = WorkflowCodeFinder(["cached_wf_module"])
    assert finder.find_spec("json", None) is None
