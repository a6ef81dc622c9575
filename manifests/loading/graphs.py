"""Reading and checking a workflow's ComfyUI graph: API format only (a UI-format export is
refused with how to export the right one), links that point at real nodes, node lookup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from manifests.loading.problems import WorkflowProblems
from manifests.loading.yaml_files import display_path
from manifests.render import is_link

UI_FORMAT_HINT = (
    "this is a UI-format export (it has top-level 'nodes' and 'links'), not the API format. "
    "In ComfyUI use Workflow menu -> Export (API) (older frontends: enable 'Dev mode options' "
    "in the settings, then 'Save (API Format)')"
)


def check_graph(graph: Any) -> list[tuple[str | None, str]]:
    """Checks that `graph` is an API-format ComfyUI graph (comfyui-protocol.md §2.1)."""
    if isinstance(graph, dict) and isinstance(graph.get("nodes"), list) and "links" in graph:
        return [(None, UI_FORMAT_HINT)]
    if not isinstance(graph, dict):
        return [(None, "an API-format graph is a JSON object keyed by node id")]
    if not graph:
        return [(None, "the graph has no nodes")]
    problems: list[tuple[str | None, str]] = []
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            problems.append((node_id, "a node must be an object with class_type and inputs"))
            continue
        if not isinstance(node.get("class_type"), str) or not node["class_type"]:
            problems.append((f"{node_id}.class_type", "missing or not a string"))
        if "_meta" in node and not isinstance(node["_meta"], dict):
            problems.append((f"{node_id}._meta", "must be an object (it holds the node's title)"))
            continue
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            problems.append((f"{node_id}.inputs", "missing or not an object"))
            continue
        for input_name, value in inputs.items():
            if is_link(value) and value[0] not in graph:
                problems.append(
                    (
                        f"{node_id}.inputs.{input_name}",
                        f"links to node '{value[0]}', which is not in the graph",
                    )
                )
    return problems


def find_node(graph: dict[str, Any], ref: str) -> tuple[str | None, str | None]:
    """Resolve a node id or `_meta.title` to exactly one node id; else (None, why)."""
    titled = [nid for nid, node in graph.items() if (node.get("_meta") or {}).get("title") == ref]
    if ref in graph:
        others = [nid for nid in titled if nid != ref]
        if others:
            return None, f"'{ref}' is both a node id and the title of node(s) {', '.join(others)}"
        return ref, None
    if len(titled) == 1:
        return titled[0], None
    if not titled:
        return None, f"no node has the id or title '{ref}'"
    return None, f"title '{ref}' is used by several nodes ({', '.join(titled)}); use a node id"


def graph_path(workflow_file: str, workflows_dir: Path) -> Path | None:
    """Where an entry's `workflow_file` lives; None when it points outside the workflows dir."""
    relative = Path(workflow_file)
    if relative.is_absolute() or ".." in relative.parts or not workflow_file:
        return None
    return workflows_dir / relative


def read_graph(path: Path, problems: WorkflowProblems) -> dict[str, Any] | None:
    """The checked graph at `path`, or None with every reason recorded in `problems`."""
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add("workflow_file", f"file not found: {shown}")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.add("workflow_file", f"cannot read {shown}: {exc}")
        return None
    try:
        graph = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(None, f"not valid JSON: {exc}", file=shown)
        return None
    found = check_graph(graph)
    for key, message in found:
        problems.add(key, message, file=shown)
    return None if found else graph
