"""Error types of the manifest layer: load-time problems and request-parameter problems.

Load errors are values (the registry collects them and keeps serving); request errors are
exceptions carrying every problem at once, so the API can answer with one entry per field.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ManifestError:
    """One problem found while loading manifests or workflow graphs.

    `str()` reads like "manifests/workflows.yaml: workflow 'x': key 'y': message", leaving out the
    parts that do not apply.
    """

    file: str
    workflow: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        parts = [self.file]
        if self.workflow is not None:
            parts.append(f"workflow '{self.workflow}'")
        if self.key is not None:
            parts.append(f"key '{self.key}'")
        parts.append(self.message)
        return ": ".join(parts)


@dataclass(frozen=True)
class ParamError:
    """One bad request parameter: its name, why it was refused and, for an object value (a
    model or image reference), the key the reason is about."""

    param: str
    reason: str
    field: str | None = None

    def __str__(self) -> str:
        where = self.param if self.field is None else f"{self.param}.{self.field}"
        return f"{where}: {self.reason}"


class ParamsInvalid(ValueError):
    """The params do not match the workflow's manifest; `errors` lists every problem."""

    def __init__(self, errors: list[ParamError]) -> None:
        self.errors = list(errors)
        super().__init__("invalid parameters: " + "; ".join(str(e) for e in self.errors))


class UnknownWorkflow(LookupError):
    """No workflow with this id is loaded; `known` lists the ids that are."""

    def __init__(self, workflow_id: str, known: list[str]) -> None:
        self.workflow_id = workflow_id
        self.known = sorted(known)
        known_text = ", ".join(self.known) if self.known else "none"
        super().__init__(f"unknown workflow '{workflow_id}' (known: {known_text})")

    def __str__(self) -> str:
        return str(self.args[0])
