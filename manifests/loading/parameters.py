"""Parameter definitions: base.yaml's shared ones, each workflow's overrides merged over them,
and the consistency checks pydantic cannot express (bounds, choices, random, default)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from manifests.definitions import ParameterDef, WorkflowEntry
from manifests.errors import ManifestError
from manifests.loading.problems import WorkflowProblems, key_of, validation_problems
from manifests.loading.yaml_files import BASE_FILE, display_path, read_yaml
from manifests.validation import check_value

PARAM_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_definition(defn: ParameterDef, *, need_binding: bool) -> list[tuple[str, str]]:
    """Consistency checks pydantic cannot express; returns (field, message) pairs."""
    problems: list[tuple[str, str]] = []
    numeric = defn.type in ("integer", "float")
    textual = defn.type in ("string", "image")
    for bound in ("min", "max"):
        value = getattr(defn, bound)
        if value is None:
            continue
        if not numeric:
            problems.append((bound, f"only integer and float parameters take {bound}"))
        elif defn.type == "integer" and not isinstance(value, int):
            problems.append((bound, f"must be an integer for an integer parameter (got {value})"))
    if defn.min is not None and defn.max is not None and defn.min > defn.max:
        problems.append(("min", f"min ({defn.min}) is greater than max ({defn.max})"))
    if defn.max_length is not None and not textual:
        problems.append(("max_length", "only string and image parameters take max_length"))
    if defn.pattern is not None:
        if not textual:
            problems.append(("pattern", "only string and image parameters take pattern"))
        try:
            re.compile(defn.pattern)
        except re.error as exc:
            problems.append(("pattern", f"not a valid regular expression: {exc}"))
            return problems
    if defn.choices is not None:
        if defn.type in ("boolean", "image"):
            problems.append(("choices", f"{defn.type} parameters do not take choices"))
        else:
            plain = defn.model_copy(update={"choices": None})
            for i, choice in enumerate(defn.choices):
                reason = check_value(plain, choice)
                if reason is not None:
                    problems.append((f"choices[{i}]", reason))
    randoms = [h for h in defn.special_handlers if h.action == "generate_random_int"]
    if defn.random or randoms:
        if defn.type != "integer":
            problems.append(("random", "only integer parameters can be random"))
        if len(randoms) > 1 or (defn.random and randoms):
            problems.append(
                ("special_handlers", "give one random rule (random: true or one handler)")
            )
        low, high = defn.random_range()
        if low > high:
            problems.append(
                ("special_handlers", f"random range min ({low}) is greater than max ({high})")
            )
        if (defn.min is not None and low < defn.min) or (defn.max is not None and high > defn.max):
            problems.append(
                (
                    "special_handlers",
                    f"random range {low}..{high} is outside min/max of the parameter",
                )
            )
    if problems:
        return problems
    if defn.required and defn.default is not None:
        problems.append(("default", "a required parameter cannot have a default"))
    elif defn.default is not None:
        reason = check_value(defn, defn.default)
        if reason is not None:
            problems.append(("default", f"default {reason}"))
    if defn.bypass is not None:
        for i, value in enumerate(defn.bypass.when):
            reason = check_value(defn.model_copy(update={"choices": None}), value)
            if reason is not None:
                problems.append((f"bypass.when[{i}]", f"can never match: {reason}"))
    if need_binding and defn.map_to is None and not defn.targets and defn.bypass is None:
        problems.append(
            ("targets", "the parameter is bound to nothing: give map_to, targets or bypass")
        )
    return problems


@dataclass
class BaseDefinitions:
    """What base.yaml defines, as workflows merge their overrides over it."""

    # Raw definitions that passed every check, by parameter name.
    valid: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Names whose definition has a problem (reported once, against base.yaml).
    invalid: set[str] = field(default_factory=set)
    errors: list[ManifestError] = field(default_factory=list)
    # base.yaml as a whole could not be read: trust no workflow.
    unreadable: bool = False


def load_base(path: Path) -> BaseDefinitions:
    """Read and check base.yaml; every problem is an error against base.yaml."""
    shown = display_path(path)
    data, problem = read_yaml(path)
    if problem is not None:
        return BaseDefinitions(errors=[ManifestError(shown, None, None, problem)], unreadable=True)
    if data is None:
        return BaseDefinitions()
    if not isinstance(data, dict):
        message = "must map parameter names to definitions"
        return BaseDefinitions(errors=[ManifestError(shown, None, None, message)], unreadable=True)
    base = BaseDefinitions()
    for name, raw in data.items():
        key = str(name)
        if not isinstance(name, str) or not PARAM_NAME_PATTERN.match(name):
            base.errors.append(
                ManifestError(shown, None, key, "not a valid parameter name (letters, digits, '_')")
            )
            base.invalid.add(key)
            continue
        if not isinstance(raw, dict):
            base.errors.append(
                ManifestError(shown, None, key, "a parameter definition must be a mapping")
            )
            base.invalid.add(key)
            continue
        try:
            defn = ParameterDef.model_validate(raw)
        except ValidationError as exc:
            for loc, message in validation_problems(exc, ParameterDef.model_fields):
                base.errors.append(ManifestError(shown, None, key_of(name, loc), message))
            base.invalid.add(name)
            continue
        problems = check_definition(defn, need_binding=False)
        for field_name, message in problems:
            base.errors.append(ManifestError(shown, None, f"{name}.{field_name}", message))
        if problems:
            base.invalid.add(name)
        else:
            base.valid[name] = raw
    return base


def merge_parameters(
    entry: WorkflowEntry, base: BaseDefinitions, problems: WorkflowProblems
) -> dict[str, ParameterDef] | None:
    """The entry's parameters, base.yaml's definitions with its overrides merged over them."""
    merged: dict[str, ParameterDef] = {}
    ok = True
    seen: set[str] = set()
    for name in entry.overrides:
        if name not in entry.parameters:
            problems.add(
                f"overrides.{name}", "overrides a parameter that is not listed in parameters"
            )
            ok = False
    for i, name in enumerate(entry.parameters):
        key = f"parameters[{i}]"
        if name in seen:
            problems.add(key, f"parameter '{name}' is listed twice")
            ok = False
            continue
        seen.add(name)
        if not PARAM_NAME_PATTERN.match(name):
            problems.add(key, f"'{name}' is not a valid parameter name (letters, digits, '_')")
            ok = False
            continue
        override = entry.overrides.get(name, {})
        if name in base.invalid:
            problems.add(key, f"parameter '{name}' has an invalid definition in {BASE_FILE}")
            ok = False
            continue
        if name not in base.valid and "type" not in override:
            problems.add(
                key,
                f"parameter '{name}' is not defined in {BASE_FILE} "
                "(define it there, or give a full definition with a type under overrides)",
            )
            ok = False
            continue
        defn = merge_definition(name, base.valid.get(name, {}), override, problems)
        if defn is None:
            ok = False
        else:
            merged[name] = defn
    return merged if ok else None


def merge_definition(
    name: str, base: dict[str, Any], override: dict[str, Any], problems: WorkflowProblems
) -> ParameterDef | None:
    """One parameter: its base.yaml definition with the workflow's override merged over it."""
    prefix = f"overrides.{name}"
    unknown = [k for k in override if k not in ParameterDef.model_fields]
    for k in unknown:
        problems.add(
            f"{prefix}.{k}", f"unknown key (allowed: {', '.join(ParameterDef.model_fields)})"
        )
    if unknown:
        return None
    raw = {**base, **override}
    if override.get("required") is True and "default" not in override:
        # Making a parameter required per workflow means its shared default no longer applies.
        raw.pop("default", None)
    try:
        defn = ParameterDef.model_validate(raw)
    except ValidationError as exc:
        for loc, message in validation_problems(exc, ParameterDef.model_fields):
            problems.add(key_of(prefix, loc), message)
        return None
    found = check_definition(defn, need_binding=True)
    for field_name, message in found:
        top = field_name.split(".")[0].split("[")[0]
        where = prefix if top in override else f"parameters.{name}"
        problems.add(f"{where}.{field_name}", message)
    return None if found else defn
