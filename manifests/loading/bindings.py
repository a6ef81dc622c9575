"""Binding parameters to their graph: `map_to`, `targets` and `bypass` resolved to node ids and
literal inputs, and `outputs` to node ids, so rendering never has to look anything up."""

from __future__ import annotations

from typing import Any

from manifests.definitions import InputRef, ParameterDef, ResolvedBypass
from manifests.loading.graphs import find_node
from manifests.loading.problems import WorkflowProblems
from manifests.render import is_link


def bind(
    parameters: dict[str, ParameterDef],
    graph: dict[str, Any],
    graph_name: str,
    problems: WorkflowProblems,
) -> tuple[dict[str, list[InputRef]], dict[str, ResolvedBypass]]:
    """Each parameter's graph inputs and bypassed node; a problem for each that does not resolve."""
    bindings: dict[str, list[InputRef]] = {}
    bypasses: dict[str, ResolvedBypass] = {}
    owner: dict[str, str] = {}
    for name, defn in parameters.items():
        refs: list[InputRef] = []
        wanted: list[tuple[str, str, str, bool]] = []  # (key, node ref, input, by_title)
        if defn.map_to is not None:
            wanted.append((f"parameters.{name}.map_to", defn.map_to, "value", True))
        for i, target in enumerate(defn.targets):
            wanted.append((f"parameters.{name}.targets[{i}]", target.node, target.input, False))
        for key, node_ref, input_name, by_title in wanted:
            if by_title:
                titled = [
                    n
                    for n, node in graph.items()
                    if (node.get("_meta") or {}).get("title") == node_ref
                ]
                if len(titled) != 1:
                    how = "no node is" if not titled else f"{len(titled)} nodes are"
                    fix = (
                        f"title the node that takes '{name}' so in ComfyUI, or remove '{name}' "
                        "from this workflow's parameters"
                        if not titled
                        else "give each node its own title"
                    )
                    problems.add(key, f"{how} titled '{node_ref}' in {graph_name} ({fix})")
                    continue
                node_id = titled[0]
            else:
                found, why = find_node(graph, node_ref)
                if found is None:
                    problems.add(key, f"{why} in {graph_name}")
                    continue
                node_id = found
            inputs = graph[node_id]["inputs"]
            class_type = graph[node_id]["class_type"]
            if input_name not in inputs:
                have = ", ".join(inputs) or "none"
                fix = (
                    "; map_to sets the `value` input of a primitive node: to set another input, "
                    f"use targets: [{{node: '{node_ref}', input: <one of the inputs>}}]"
                    if by_title
                    else ""
                )
                problems.add(
                    key,
                    f"node {node_id} ({class_type}) has no input '{input_name}' "
                    f"in {graph_name} (inputs: {have}){fix}",
                )
                continue
            if is_link(inputs[input_name]):
                problems.add(
                    key,
                    f"input '{input_name}' of node {node_id} ({class_type}) is a link from "
                    f"node {inputs[input_name][0]}; bind parameters to literal inputs",
                )
                continue
            ref = InputRef(node_id=node_id, input=input_name)
            if ref.key() in owner and owner[ref.key()] != name:
                problems.add(
                    key, f"input {ref.key()} is already set by parameter '{owner[ref.key()]}'"
                )
                continue
            owner[ref.key()] = name
            if ref not in refs:
                refs.append(ref)
        bindings[name] = refs
        if defn.bypass is not None:
            resolved = resolve_bypass(name, defn, graph, graph_name, problems)
            if resolved is not None:
                bypasses[name] = resolved
    return bindings, bypasses


def resolve_bypass(
    name: str,
    defn: ParameterDef,
    graph: dict[str, Any],
    graph_name: str,
    problems: WorkflowProblems,
) -> ResolvedBypass | None:
    """The node a parameter removes, once every consumer of its outputs has a replacement."""
    assert defn.bypass is not None
    key = f"parameters.{name}.bypass"
    node_id, why = find_node(graph, defn.bypass.node)
    if node_id is None:
        problems.add(f"{key}.node", f"{why} in {graph_name}")
        return None
    inputs = graph[node_id]["inputs"]
    class_type = graph[node_id]["class_type"]
    ok = True
    for index, input_name in defn.bypass.outputs.items():
        if input_name not in inputs:
            problems.add(
                f"{key}.outputs.{index}",
                f"node {node_id} ({class_type}) has no input '{input_name}' in {graph_name}",
            )
            ok = False
    for consumer_id, consumer in graph.items():
        for input_name, value in consumer["inputs"].items():
            if is_link(value) and value[0] == node_id and value[1] not in defn.bypass.outputs:
                problems.add(
                    f"{key}.outputs",
                    f"node {consumer_id} input '{input_name}' uses output {value[1]} of node "
                    f"{node_id} ({class_type}); say which input of {node_id} replaces it",
                )
                ok = False
    if not ok:
        return None
    return ResolvedBypass(
        node_id=node_id, when=list(defn.bypass.when), outputs=dict(defn.bypass.outputs)
    )


def resolve_outputs(
    outputs: list[str] | None, graph: dict[str, Any], problems: WorkflowProblems
) -> list[str] | None:
    """An entry's `outputs` (node ids or titles) as node ids, each once; None: every output."""
    if outputs is None:
        return None
    resolved: list[str] = []
    for i, ref in enumerate(outputs):
        node_id, why = find_node(graph, ref)
        if node_id is None:
            problems.add(f"outputs[{i}]", f"{why} in the graph")
        elif node_id not in resolved:
            resolved.append(node_id)
    return resolved
