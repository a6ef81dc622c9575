"""docs/architecture.md's layout lists every module of the four packages, and nothing that is gone:
the map of the source stays true to the tree."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "temporal_workflows", "activities", "manifests")


def _layout_block() -> list[str]:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None, "docs/architecture.md: no code block under ## Layout"
    return block.group(1).splitlines()


def documented_modules() -> set[str]:
    """Module paths the layout names: folders by their indentation (two spaces a level), then the
    names at the start of each line (a line may list several: `a.py  b.py`)."""
    folders: list[str] = []
    found: set[str] = set()
    for line in _layout_block():
        stripped = line.lstrip(" ")
        if not stripped:
            continue
        level = (len(line) - len(stripped)) // 2
        names = []
        for token in stripped.split():
            if token.endswith((".py", "/")) and "," not in token:
                names.append(token)
            else:
                break
        del folders[level:]
        for name in names:
            if name.endswith("/"):
                folders.append(name.rstrip("/"))
            else:
                found.add("/".join([*folders, name]))
    return found


def actual_modules() -> set[str]:
    return {
        path.relative_to(REPO_ROOT).as_posix()
        for package in PACKAGES
        for path in (REPO_ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    }


def test_every_module_is_in_the_layout() -> None:
    missing = sorted(actual_modules() - documented_modules())
    assert not missing, f"modules missing from docs/architecture.md's layout: {missing}"


def test_the_layout_names_no_module_that_is_gone() -> None:
    gone = sorted(documented_modules() - actual_modules())
    assert not gone, f"docs/architecture.md's layout lists modules that do not exist: {gone}"
