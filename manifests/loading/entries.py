"""One workflows.yaml entry: its keys checked, its graph read, its parameters merged and bound,
into a `WorkflowManifest`, or into the list of everything wrong with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from manifests.definitions import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_POOL,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_SECONDS,
    LoraEntry,
    ParameterDef,
    WorkflowEntry,
    WorkflowManifest,
)
from manifests.errors import ManifestError
from manifests.loading.bindings import bind, resolve_outputs
from manifests.loading.graphs import graph_path, read_graph
from manifests.loading.loras import lora_prompt
from manifests.loading.parameters import BaseDefinitions, merge_parameters
from manifests.loading.problems import WorkflowProblems, key_of, validate_what_is_valid
from manifests.loading.yaml_files import display_path

WORKFLOW_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def load_entry(
    workflow_id: str,
    raw: Any,
    *,
    file: str,
    workflows_dir: Path,
    base: BaseDefinitions,
    loras: dict[str, LoraEntry],
    revision: str,
) -> tuple[WorkflowManifest | None, list[ManifestError]]:
    """The resolved workflow, or None; and every problem found in the entry, `file` naming it."""
    problems = WorkflowProblems(file, workflow_id)
    if not WORKFLOW_ID_PATTERN.match(workflow_id):
        problems.add(
            None, "workflow ids use letters, digits, '_', '-' and '.' and start with a letter/digit"
        )
    if not isinstance(raw, dict):
        problems.add(None, "a workflow entry must be a mapping with workflow_file, parameters, ...")
        return None, problems.errors
    checked = validate_what_is_valid(WorkflowEntry, raw)
    for loc, message in checked.problems:
        problems.add(key_of("", loc), message)
    entry = checked.model
    if entry is None:
        return None, problems.errors
    path = graph_path(entry.workflow_file, workflows_dir)
    graph = None
    if path is None:
        problems.add("workflow_file", "must be a path inside the workflows directory")
    else:
        graph = read_graph(path, problems)
    parameters: dict[str, ParameterDef] = {}
    # Without its parameter list or its overrides, the parameters checked would not be the
    # workflow's: every one would only add a problem already reported.
    if not checked.dropped & {"parameters", "overrides"}:
        parameters = merge_parameters(entry, base, problems)
    if graph is None or path is None:
        return None, problems.errors
    graph_name = display_path(path)
    bindings, bypasses = bind(parameters, graph, graph_name, problems)
    outputs = resolve_outputs(entry.outputs, graph, problems)
    if problems.errors:
        return None, problems.errors
    manifest = WorkflowManifest(
        id=workflow_id,
        description=entry.description,
        workflow_file=entry.workflow_file,
        parameters=parameters,
        timeout_seconds=(
            float(entry.timeout) if entry.timeout is not None else DEFAULT_TIMEOUT_SECONDS
        ),
        pool=entry.pool or DEFAULT_POOL,
        outputs=outputs,
        max_attempts=(entry.retries if entry.retries is not None else DEFAULT_RETRIES) + 1,
        deadline_seconds=(
            float(entry.deadline) if entry.deadline is not None else DEFAULT_DEADLINE_SECONDS
        ),
        previews=entry.previews,
        stall_timeout=float(entry.stall_timeout) if entry.stall_timeout is not None else None,
        template=graph,
        bindings=bindings,
        bypasses=bypasses,
        revision=revision,
        lora_prompt=lora_prompt(parameters, bindings, graph, loras),
    )
    return manifest, []


def load_experimental(
    path: Path,
    *,
    base: BaseDefinitions,
    loras: dict[str, LoraEntry],
    revision: str,
) -> tuple[WorkflowManifest | None, list[ManifestError]]:
    """A `workflows/exp_<name>.json` graph that workflows.yaml does not list, as the original
    service runs it: workflow id `exp_<name>`, every base.yaml parameter accepted.

    A parameter is written where its binding finds its node in this graph; one that finds none
    is accepted and ignored (the original does the same), so it has no default here. None is
    required: what a request leaves out keeps the graph's own value.
    """
    workflow_id = path.stem
    shown = display_path(path)
    problems = WorkflowProblems(shown, workflow_id)
    if not WORKFLOW_ID_PATTERN.match(workflow_id):
        problems.add(
            None,
            "an experimental graph's file name is its workflow id: letters, digits, '_', '-' "
            "and '.' only",
        )
        return None, problems.errors
    graph = read_graph(path, problems)
    if graph is None:
        return None, problems.errors
    parameters: dict[str, ParameterDef] = {}
    for name, raw in base.raw.items():
        if name not in base.invalid:
            parameters[name] = ParameterDef.model_validate({**raw, "required": False})
    # Bindings that do not resolve are not errors here: the parameter is then simply unused.
    bindings, bypasses = bind(parameters, graph, shown, WorkflowProblems(shown, workflow_id))
    for name, defn in parameters.items():
        if not bindings.get(name) and name not in bypasses:
            parameters[name] = defn.model_copy(
                update={
                    "default": None,
                    "description": "Not used by this graph: accepted and ignored.",
                }
            )
    manifest = WorkflowManifest(
        id=workflow_id,
        description=f"Experimental: {path.name} run with the base.yaml parameters.",
        workflow_file=path.name,
        parameters=parameters,
        template=graph,
        bindings=bindings,
        bypasses=bypasses,
        revision=revision,
        experimental=True,
        lora_prompt=lora_prompt(parameters, bindings, graph, loras),
    )
    return manifest, []
