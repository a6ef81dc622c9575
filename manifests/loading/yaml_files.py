"""Reading the manifest YAML files: a duplicated key, an unreadable or half-saved file become
problems to report, never exceptions; and paths as users see them in those reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

BASE_FILE = "base.yaml"
WORKFLOWS_FILE = "workflows.yaml"
LORAS_FILE = "loras.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a duplicated key is a slip."""


def _construct_unique_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def display_path(path: Path) -> str:
    """A path as users see it in errors: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):  # outside the working directory, or no working directory
        return str(path)


def read_yaml(path: Path) -> tuple[Any, str | None]:
    """(content, None), or (None, why the file cannot be used)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "file not found"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read: {exc}"
    if text == "":
        # Saving truncates the file before writing it; a zero-byte file is far more likely an
        # edit in progress than a wish to remove everything (a file with a comment means "empty").
        return None, "file is empty (a save in progress?); write a comment to mean 'nothing here'"
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader), None  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        return None, f"not valid YAML: {exc}".replace("\n", " ")
