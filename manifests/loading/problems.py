"""How loading reports what it finds: a collector of one workflow's `ManifestError`s, and
pydantic's validation errors turned into manifest keys and plain messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from manifests.errors import ManifestError


@dataclass
class WorkflowProblems:
    """Every problem found in one workflows.yaml entry, its parameters and its graph."""

    file: str
    workflow: str
    errors: list[ManifestError] = field(default_factory=list)

    def add(self, key: str | None, message: str, file: str | None = None) -> None:
        """Record a problem at `key` (None: the whole entry or file) of `file` (default: ours)."""
        self.errors.append(ManifestError(file or self.file, self.workflow, key, message))


def key_of(prefix: str, loc: Iterable[Any]) -> str:
    """A pydantic location as a manifest key: ("targets", 0, "node") -> "prefix.targets[0].node"."""
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key


def validation_problems(
    exc: ValidationError, allowed: Iterable[str]
) -> list[tuple[tuple[Any, ...], str]]:
    """(location, message) for each error, in words a manifest author reads."""
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-before", "function-after"))
        if err["type"] == "extra_forbidden":
            message = f"unknown key (allowed: {', '.join(allowed)})"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] == "value_error":
            message = str(err.get("ctx", {}).get("error", err["msg"]))
        else:
            message = err["msg"]
        out.append((loc, message))
    return out
