"""Strict validation of request parameters against a workflow manifest.

ComfyUI itself coerces loosely (`int()` turns 8.9 into 8, `bool()` turns "false" into True:
comfyui-protocol.md §2.1, "Coercion"), so we refuse anything not already of the right JSON type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from manifests.definitions import ParameterDef, WorkflowManifest
from manifests.errors import ParamError, ParamsInvalid
from manifests.image_inputs import image_value_problems, is_inline_image
from manifests.model_inputs import is_model_reference, model_value_problems


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(value))
    if kind is None:
        kind = "null" if value is None else type(value).__name__
        if isinstance(value, list):
            kind = "array"
        elif isinstance(value, dict):
            kind = "object"
        return kind
    text = (
        repr(value)
        if isinstance(value, str)
        else str(value).lower()
        if kind == "boolean"
        else str(value)
    )
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"


def same_value(a: Any, b: Any) -> bool:
    """Equality that does not confuse True with 1 or 1 with 1.0 (used for choices and bypass)."""
    return type(a) is type(b) and a == b


def check_value(defn: ParameterDef, value: Any, *, model_folder: str | None = None) -> str | None:
    """Why `value` is not acceptable for `defn`, or None when it is. With `model_folder` (the
    parameter sets a model loader's file), a file to download is accepted too."""
    problems = value_problems(defn, value, model_folder=model_folder)
    return "; ".join(reason for _, reason in problems) or None


def value_problems(
    defn: ParameterDef, value: Any, *, model_folder: str | None = None
) -> list[tuple[str | None, str]]:
    """Every reason `value` is not acceptable for `defn`, as (key of an object value or None,
    reason): a model or image reference says which of its keys is wrong."""
    if value is not None and model_folder is not None and is_model_reference(value):
        if defn.choices is not None:
            return [(None, "takes one of the listed files only, not a file to download")]
        return [(err.field, str(err)) for err in model_value_problems(value)]
    if value is not None and defn.takes_file and is_inline_image(value):
        # A file the request brings (url / base64): its shape here, its content at the API.
        return [(err.field, str(err)) for err in image_value_problems(value)]
    reason = _plain_value_problem(defn, value)
    return [] if reason is None else [(None, reason)]


def _plain_value_problem(defn: ParameterDef, value: Any) -> str | None:
    token = defn.random_token()
    if token is not None and same_value(value, token):
        return None
    kind = defn.type
    if value is None:
        return "must not be null (omit the parameter to use its default)"
    if kind == "string" or defn.takes_file:
        if not isinstance(value, str):
            if defn.takes_file:
                return (
                    'expected a file name, {"url": ...} or {"base64": ...}, '
                    f"got {_describe(value)}"
                )
            return f"expected a string, got {_describe(value)}"
        if defn.max_length is not None and len(value) > defn.max_length:
            return f"must be at most {defn.max_length} characters long (got {len(value)})"
        if defn.pattern is not None and re.fullmatch(defn.pattern, value) is None:
            return f"must match the pattern {defn.pattern}"
        if defn.takes_file:
            if value == "":
                return f"must name {'an image' if kind == 'image' else 'a'} file"
            if value.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", value):
                return "must be a file name inside ComfyUI's input directory"
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            hint = " (a whole number without a fraction)" if isinstance(value, float) else ""
            accepts = f" or {token!r}" if token is not None else ""
            return f"expected an integer{accepts}{hint}, got {_describe(value)}"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {_describe(value)}"
        if not math.isfinite(value):
            return "must be a finite number"
    elif kind == "boolean":
        if not isinstance(value, bool):
            return f"expected true or false, got {_describe(value)}"
    if kind in ("integer", "float"):
        if defn.min is not None and value < defn.min:
            return f"must be >= {defn.min} (got {value})"
        if defn.max is not None and value > defn.max:
            return f"must be <= {defn.max} (got {value})"
    if defn.choices is not None:
        # For floats, 1 and 1.0 are the same choice; otherwise types must match exactly.
        def matches(choice: Any) -> bool:
            if (
                kind == "float"
                and not isinstance(choice, bool)
                and isinstance(choice, (int, float))
            ):
                return float(choice) == float(value)
            return same_value(choice, value)

        if not any(matches(c) for c in defn.choices):
            shown = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in defn.choices[:50])
            more = ", ..." if len(defn.choices) > 50 else ""
            return f"must be one of: {shown}{more} (got {_describe(value)})"
    return None


def normalise_value(defn: ParameterDef, value: Any) -> Any:
    """The value as sent to ComfyUI: floats stay floats even when the request sent 1."""
    if defn.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def validate_params(manifest: WorkflowManifest, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check every parameter strictly and fill defaults; raise ParamsInvalid listing all problems.

    The result is in declaration order. A random-seed token such as "random" is kept as is:
    rendering resolves it.
    """
    if not isinstance(params, Mapping):
        raise ParamsInvalid([ParamError("params", f"expected an object, got {_describe(params)}")])
    errors: list[ParamError] = []
    known = manifest.parameters
    for name in params:
        if not isinstance(name, str) or name not in known:
            listed = ", ".join(known) if known else "none"
            errors.append(ParamError(str(name), f"unknown parameter (accepted: {listed})"))
    resolved: dict[str, Any] = {}
    model_folders = manifest.model_folders()
    for name, defn in known.items():
        if name in params:
            problems = value_problems(defn, params[name], model_folder=model_folders.get(name))
            if problems:
                errors.extend(ParamError(name, reason, field) for field, reason in problems)
                continue
            resolved[name] = normalise_value(defn, params[name])
        elif defn.required:
            errors.append(ParamError(name, "required"))
        elif defn.default is not None:
            resolved[name] = normalise_value(defn, defn.default)
    if errors:
        raise ParamsInvalid(errors)
    return resolved
