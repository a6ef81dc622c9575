"""How loading reports what it finds: a collector of one workflow's `ManifestError`s, pydantic's
validation errors as manifest keys and plain messages, and validation that keeps what is valid."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

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


M = TypeVar("M", bound=BaseModel)


@dataclass
class Checked(Generic[M]):
    """A mapping validated as far as it is valid: see `validate_what_is_valid`."""

    # None when even the keys without a problem do not make a model (a required key is bad).
    model: M | None
    # The mapping `model` was made from: the input without the keys in `dropped`.
    raw: dict[Any, Any]
    problems: list[tuple[tuple[Any, ...], str]]
    dropped: set[Any]


def validate_what_is_valid(model_type: type[M], raw: dict[Any, Any]) -> Checked[M]:
    """Validate `raw`; when that fails, validate it again without the keys its problems are under.

    A misspelt key must not hide the problems of the others (a binding to a missing node next to
    a `deafult:`), so the checks that come after validation run on what remains. The problems are
    those of the whole mapping; the second pass only says whether a model can be made without
    the bad keys.
    """
    try:
        return Checked(model_type.model_validate(raw), raw, [], set())
    except ValidationError as exc:
        problems = validation_problems(exc, model_type.model_fields)
    dropped = {loc[0] for loc, _ in problems if loc}
    rest = {key: value for key, value in raw.items() if key not in dropped}
    if any(not loc for loc, _ in problems):  # the mapping as a whole is wrong
        return Checked(None, rest, problems, dropped)
    try:
        model = model_type.model_validate(rest)
    except ValidationError:
        return Checked(None, rest, problems, dropped)
    return Checked(model, rest, problems, dropped)
