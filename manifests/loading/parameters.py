"""Parameter definitions: base.yaml's shared ones, each workflow's overrides merged over them,
and the consistency checks pydantic cannot express (bounds, choices, random, default)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from manifests.definitions import RANDOM_TOKEN, SEED_MAX, SEED_MIN, ParameterDef, WorkflowEntry
from manifests.errors import ManifestError
from manifests.loading.problems import WorkflowProblems, key_of, validate_what_is_valid
from manifests.loading.yaml_files import BASE_FILE, display_path, read_yaml
from manifests.validation import check_value

PARAM_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_definition(defn: ParameterDef, *, need_binding: bool) -> list[tuple[str, str]]:
    """Consistency checks pydantic cannot express; returns (field, message) pairs."""
    problems: list[tuple[str, str]] = []
    numeric = defn.type in ("integer", "float")
    textual = defn.type == "string" or defn.takes_file
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
        problems.append(("max_length", "only string and file parameters take max_length"))
    if defn.pattern is not None:
        if not textual:
            problems.append(("pattern", "only string and file parameters take pattern"))
        try:
            re.compile(defn.pattern)
        except re.error as exc:
            problems.append(("pattern", f"not a valid regular expression: {exc}"))
            return problems
    if defn.choices is not None:
        if defn.type == "boolean" or defn.takes_file:
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
            problems.append(("default", f"default {reason}{_default_fix(defn)}"))
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


def _default_fix(defn: ParameterDef) -> str:
    """How to fix a default the original format accepted and we refuse, or ""."""
    default = defn.default
    if not isinstance(default, str):
        return ""
    if defn.type == "integer" and default.strip().lower() == RANDOM_TOKEN:
        # The original draws a random seed for the literal "random" without declaring it.
        return (
            f"; to draw a random integer per request, add `random: true` to the parameter "
            f"(e.g. `{{type: integer, default: {default}, random: true}}`), or the original "
            f"format's `special_handlers: [{{value: {default}, action: generate_random_int, "
            f"args: {{min: {SEED_MIN}, max: {SEED_MAX}}}}}]`"
        )
    # The original converts "20" to 20; we take YAML's types as written.
    try:
        unquoted: Any = yaml.safe_load(default)
    except yaml.YAMLError:
        return ""
    if unquoted is None:
        return ""
    fixed = defn.model_copy(update={"default": unquoted})
    if not isinstance(unquoted, str) and check_value(fixed, unquoted) is None:
        return f"; write it without quotes: `default: {default.strip()}`"
    return ""


@dataclass
class BaseDefinitions:
    """What base.yaml defines, as workflows merge their overrides over it."""

    # Raw definitions by parameter name. A definition with a problem is here without its bad
    # keys (when the rest still makes a definition), so the workflows using it still get their
    # bindings checked.
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        checked = validate_what_is_valid(ParameterDef, raw)
        for loc, message in checked.problems:
            base.errors.append(ManifestError(shown, None, key_of(name, loc), message))
        if checked.model is None:
            base.invalid.add(name)
            continue
        found = check_definition(checked.model, need_binding=False)
        for field_name, message in found:
            base.errors.append(ManifestError(shown, None, f"{name}.{field_name}", message))
        if found or checked.problems:
            base.invalid.add(name)
        base.raw[name] = checked.raw
    return base


def merge_parameters(
    entry: WorkflowEntry, base: BaseDefinitions, problems: WorkflowProblems
) -> dict[str, ParameterDef]:
    """The entry's parameters, base.yaml's definitions with its overrides merged over them.

    A parameter with a problem is left out only when no definition can be made of it; one made
    without its bad keys is kept, so that binding it to the graph can report what else is wrong.
    """
    merged: dict[str, ParameterDef] = {}
    seen: set[str] = set()
    for name in entry.overrides:
        if name not in entry.parameters:
            problems.add(
                f"overrides.{name}",
                f"overrides a parameter that is not listed in parameters (add `- {name}` to the "
                "workflow's parameters, or remove the override)",
            )
    for i, name in enumerate(entry.parameters):
        key = f"parameters[{i}]"
        if name in seen:
            problems.add(key, f"parameter '{name}' is listed twice")
            continue
        seen.add(name)
        if not PARAM_NAME_PATTERN.match(name):
            problems.add(key, f"'{name}' is not a valid parameter name (letters, digits, '_')")
            continue
        override = entry.overrides.get(name, {})
        if name in base.invalid:
            problems.add(key, f"parameter '{name}' has an invalid definition in {BASE_FILE}")
            if name not in base.raw:
                continue
        elif name not in base.raw and "type" not in override:
            problems.add(
                key,
                f"parameter '{name}' is not defined in {BASE_FILE} "
                "(define it there, or give a full definition with a type under overrides)",
            )
            continue
        defn = merge_definition(
            name, base.raw.get(name, {}), override, problems, base_broken=name in base.invalid
        )
        if defn is not None:
            merged[name] = defn
    return merged


def merge_definition(
    name: str,
    base: dict[str, Any],
    override: dict[str, Any],
    problems: WorkflowProblems,
    *,
    base_broken: bool = False,
) -> ParameterDef | None:
    """One parameter: its base.yaml definition with the workflow's override merged over it.

    Returns the definition made of the keys without a problem (None when there is none) and
    records every problem; `base_broken`: base.yaml's own problems were reported against it.
    """
    prefix = f"overrides.{name}"
    raw = {**base, **override}
    if override.get("required") is True and "default" not in override:
        # Making a parameter required per workflow means its shared default no longer applies.
        raw.pop("default", None)
    checked = validate_what_is_valid(ParameterDef, raw)
    for loc, message in checked.problems:
        problems.add(key_of(prefix, loc), message)
    if checked.model is None:
        return None
    # Without a key that was dropped (a misspelt `targets:`), "bound to nothing" would only
    # repeat the problem already reported.
    complete = not checked.problems and not base_broken
    for field_name, message in check_definition(checked.model, need_binding=complete):
        top = field_name.split(".")[0].split("[")[0]
        if top in override:
            problems.add(f"{prefix}.{field_name}", message)
        elif not base_broken:
            problems.add(f"parameters.{name}.{field_name}", message)
    return checked.model
