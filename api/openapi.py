"""The OpenAPI document with each workflow's typed parameters.

POST /generate takes a different `params` object per workflow. The document describes its body
as a union discriminated by `workflow_id`, one variant per workflow, whose `params` is that
manifest's JSON Schema (`WorkflowManifest.json_schema()`). It is rebuilt when the registry
revision changes, so hot-reloaded workflows appear in /docs without a restart.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.body_text import TEXT_PATTERN
from api.responses import document_common_errors
from manifests.registry import RegistrySnapshot

_REF_PREFIX = "#/components/schemas/"
# Routes that answer without Temporal, so never with 503.
NO_TEMPORAL_PATHS = {
    "/health",
    "/ping",
    "/metrics",
    "/workflows",
    "/workflows/{workflow_id}",
    "/tasks/{task_id}/outputs/{filename}",
    "/results/{task_id}/{filename}",
}


def _rewrite_refs(node: Any, old_prefix: str, new_prefix: str) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(old_prefix):
                out[key] = new_prefix + value[len(old_prefix) :]
            else:
                out[key] = _rewrite_refs(value, old_prefix, new_prefix)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, old_prefix, new_prefix) for v in node]
    return node


def _params_component(workflow_id: str, schema: dict[str, Any], components: dict[str, Any]) -> str:
    """Adds a manifest's params schema (and its renamed $defs) to components; returns its name."""
    params = copy.deepcopy(schema)
    params.pop("$schema", None)
    params.pop("$id", None)
    defs = params.pop("$defs", None) or {}
    prefix = f"{workflow_id}__"
    for name, sub in defs.items():
        components[prefix + name] = _rewrite_refs(sub, "#/$defs/", _REF_PREFIX + prefix)
    params = _rewrite_refs(params, "#/$defs/", _REF_PREFIX + prefix)
    params.setdefault("title", f"{workflow_id} params")
    name = f"Params_{workflow_id}"
    components[name] = params
    return name


def build_openapi(app: FastAPI, snapshot: RegistrySnapshot) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    variants: list[dict[str, str]] = []
    mapping: dict[str, str] = {}
    generate_fields = components.get("GenerateCreate", {}).get("properties", {})
    for workflow_id, manifest in snapshot.workflows.items():
        params_name = _params_component(workflow_id, manifest.json_schema(), components)
        variant_name = f"Generate_{workflow_id}"
        components[variant_name] = {
            "type": "object",
            "title": f"Generate with {workflow_id}",
            "description": manifest.description,
            "properties": {
                "workflow_id": {"type": "string", "const": workflow_id, "enum": [workflow_id]},
                "params": {"$ref": _REF_PREFIX + params_name},
                # The rest as GenerateCreate declares it (options, callback_url): one source.
                **{
                    name: schema
                    for name, schema in generate_fields.items()
                    if name not in ("workflow_id", "params")
                },
            },
            # A workflow with required parameters needs `params` (else 422 naming them).
            "required": ["workflow_id", "params"]
            if manifest.json_schema().get("required")
            else ["workflow_id"],
            "additionalProperties": False,
        }
        ref = _REF_PREFIX + variant_name
        variants.append({"$ref": ref})
        mapping[workflow_id] = ref
    operation = document.get("paths", {}).get("/generate", {}).get("post")
    if operation is not None and variants:
        body = operation["requestBody"]["content"]["application/json"]
        body["schema"] = {
            "oneOf": variants,
            "discriminator": {"propertyName": "workflow_id", "mapping": mapping},
        }
    document_common_errors(document, no_temporal=NO_TEMPORAL_PATHS)
    _document_output_names(document)
    _document_text_rule(document)
    return document


def _document_text_rule(document: dict[str, Any]) -> None:
    """Gives each free-text field of a request body (no pattern, enum or format of its own) the
    pattern of what api.body_text lets through, so the document states what is refused."""
    components = document.get("components", {}).get("schemas", {})
    seen: set[int] = set()
    stack: list[Any] = [
        operation["requestBody"].get("content", {}).get("application/json", {}).get("schema")
        for operations in document.get("paths", {}).values()
        for operation in operations.values()
        if isinstance(operation, dict) and "requestBody" in operation
    ]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            stack.append(components.get(ref[len(_REF_PREFIX) :]))
        if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & set(node):
            node["pattern"] = TEXT_PATTERN
        for key in ("properties", "$defs"):
            stack.extend((node.get(key) or {}).values())
        for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            stack.append(node.get(key))


# What OutputStore accepts as a task id or file name (one plain path component); the route
# checks it itself, with a 400 naming the problem, so this only documents it.
_STORE_NAME_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": r"^[^/\\\x00-\x1f\x7f]+$",
}
_STORE_NAME_PARAMS = {
    "/tasks/{task_id}/outputs/{filename}": ("task_id", "filename"),
    "/results/{task_id}/{filename}": ("task_id", "filename"),
    "/tasks/{task_id}/preview": ("task_id",),
}


def _document_output_names(document: dict[str, Any]) -> None:
    for path, names in _STORE_NAME_PARAMS.items():
        operation = document.get("paths", {}).get(path, {}).get("get")
        if operation is None:
            continue
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "path" and parameter.get("name") in names:
                parameter["schema"] = {**parameter.get("schema", {}), **_STORE_NAME_SCHEMA}


class OpenAPICache:
    """One document per registry revision."""

    def __init__(self) -> None:
        self._revision: str | None = None
        self._document: dict[str, Any] | None = None

    def document(self, app: FastAPI, snapshot: RegistrySnapshot) -> dict[str, Any]:
        if self._document is None or self._revision != snapshot.revision:
            self._document = build_openapi(app, snapshot)
            self._revision = snapshot.revision
        return self._document
