"""Reads base.yaml, workflows.yaml and the workflow graphs into resolved `WorkflowManifest`s.

Loading never raises for bad content: every problem becomes a `ManifestError` naming the file, the
workflow and the key, and a broken workflow does not stop the others from loading.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from manifests.definitions import (
    InputRef,
    ParameterDef,
    ResolvedBypass,
    WorkflowEntry,
    WorkflowManifest,
)
from manifests.errors import ManifestError
from manifests.render import is_link
from manifests.validation import check_value

BASE_FILE = "base.yaml"
WORKFLOWS_FILE = "workflows.yaml"
WORKFLOW_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PARAM_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
UI_FORMAT_HINT = (
    "this is a UI-format export (it has top-level 'nodes' and 'links'), not the API format. "
    "In ComfyUI use Workflow menu -> Export (API) (older frontends: enable 'Dev mode options' "
    "in the settings, then 'Save (API Format)')"
)


@dataclass
class LoadResult:
    """Everything one load produced; the registry combines it with its last good state."""

    revision: str
    workflows: dict[str, WorkflowManifest]
    errors: list[ManifestError]
    # Workflow ids listed in workflows.yaml that failed to load.
    failed: set[str] = field(default_factory=set)
    # True when base.yaml or workflows.yaml as a whole could not be read: trust no workflow.
    unreadable: bool = False
    # Files outside the watched directories' top level that this load read (to watch them too).
    extra_files: list[Path] = field(default_factory=list)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a duplicated key is a slip."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,  # type: ignore[arg-type]
)


def display_path(path: Path) -> str:
    """A path as users see it in errors: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):  # outside the working directory, or no working directory
        return str(path)


def _loc_key(prefix: str, loc: Iterable[Any]) -> str:
    key = prefix
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        else:
            key = f"{key}.{part}" if key else str(part)
    return key


def _pydantic_errors(exc: ValidationError, allowed: Iterable[str]) -> list[tuple[tuple, str]]:
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


def _read_yaml(path: Path) -> tuple[Any, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "file not found"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read: {exc}"
    if text == "":
        # Saving truncates the file before writing it; a zero-byte file is far more likely an
        # edit in progress than a wish to remove everything (a file with a comment means "empty").
        return None, "file is empty (a save in progress?); write a comment to mean 'nothing here'"
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader), None  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        return None, f"not valid YAML: {exc}".replace("\n", " ")


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


def content_revision(files: Iterable[tuple[str, Path]]) -> str:
    """Hash over (name, bytes) of the given files; missing files count as absent.

    Names are relative to their directory, so two hosts holding the same files agree on it.
    """
    digest = hashlib.sha256()
    for name, path in sorted(set(files)):
        digest.update(name.encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"<missing>")
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class _WorkflowLoader:
    """Loads one workflows.yaml entry: merges its parameters, reads its graph, resolves bindings.

    Collects every problem in `errors` rather than stopping at the first.
    """

    def __init__(
        self,
        workflow_id: str,
        manifests_file: str,
        workflows_dir: Path,
        base_raw: dict[str, dict[str, Any]],
        base_invalid: set[str],
    ) -> None:
        self.id = workflow_id
        self.file = manifests_file
        self.workflows_dir = workflows_dir
        self.base_raw = base_raw
        self.base_invalid = base_invalid
        self.errors: list[ManifestError] = []
        self.graph_path: Path | None = None

    def error(self, key: str | None, message: str, file: str | None = None) -> None:
        self.errors.append(ManifestError(file or self.file, self.id, key, message))

    def load(self, raw: Any, revision: str) -> WorkflowManifest | None:
        if not WORKFLOW_ID_PATTERN.match(self.id):
            self.error(
                None,
                "workflow ids use letters, digits, '_', '-' and '.' and start with a letter/digit",
            )
        if not isinstance(raw, dict):
            self.error(
                None, "a workflow entry must be a mapping with workflow_file, parameters, ..."
            )
            return None
        try:
            entry = WorkflowEntry.model_validate(raw)
        except ValidationError as exc:
            for loc, message in _pydantic_errors(exc, WorkflowEntry.model_fields):
                self.error(_loc_key("", loc), message)
            return None
        graph = self.load_graph(entry.workflow_file)
        parameters = self.merge_parameters(entry)
        if graph is None or parameters is None or self.errors:
            return None
        bindings, bypasses = self.bind(parameters, graph)
        outputs = self.resolve_outputs(entry.outputs, graph)
        if self.errors:
            return None
        return WorkflowManifest(
            id=self.id,
            description=entry.description,
            workflow_file=entry.workflow_file,
            parameters=parameters,
            timeout_seconds=float(entry.timeout) if entry.timeout is not None else 600.0,
            pool=entry.pool or "default",
            outputs=outputs,
            max_attempts=(entry.retries if entry.retries is not None else 2) + 1,
            previews=entry.previews,
            stall_timeout=float(entry.stall_timeout) if entry.stall_timeout is not None else None,
            template=graph,
            bindings=bindings,
            bypasses=bypasses,
            revision=revision,
        )

    def load_graph(self, workflow_file: str) -> dict[str, Any] | None:
        relative = Path(workflow_file)
        if relative.is_absolute() or ".." in relative.parts or not workflow_file:
            self.error("workflow_file", "must be a path inside the workflows directory")
            return None
        path = self.workflows_dir / relative
        self.graph_path = path
        shown = display_path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.error("workflow_file", f"file not found: {shown}")
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.error("workflow_file", f"cannot read {shown}: {exc}")
            return None
        try:
            graph = json.loads(text)
        except json.JSONDecodeError as exc:
            self.error(None, f"not valid JSON: {exc}", file=shown)
            return None
        problems = check_graph(graph)
        for key, message in problems:
            self.error(key, message, file=shown)
        return None if problems else graph

    def merge_parameters(self, entry: WorkflowEntry) -> dict[str, ParameterDef] | None:
        merged: dict[str, ParameterDef] = {}
        ok = True
        seen: set[str] = set()
        for name in entry.overrides:
            if name not in entry.parameters:
                self.error(
                    f"overrides.{name}", "overrides a parameter that is not listed in parameters"
                )
                ok = False
        for i, name in enumerate(entry.parameters):
            key = f"parameters[{i}]"
            if name in seen:
                self.error(key, f"parameter '{name}' is listed twice")
                ok = False
                continue
            seen.add(name)
            if not PARAM_NAME_PATTERN.match(name):
                self.error(key, f"'{name}' is not a valid parameter name (letters, digits, '_')")
                ok = False
                continue
            override = entry.overrides.get(name, {})
            if name in self.base_invalid:
                self.error(key, f"parameter '{name}' has an invalid definition in {BASE_FILE}")
                ok = False
                continue
            if name not in self.base_raw and "type" not in override:
                self.error(
                    key,
                    f"parameter '{name}' is not defined in {BASE_FILE} "
                    "(define it there, or give a full definition with a type under overrides)",
                )
                ok = False
                continue
            defn = self.merge_one(name, self.base_raw.get(name, {}), override)
            if defn is None:
                ok = False
            else:
                merged[name] = defn
        return merged if ok else None

    def merge_one(
        self, name: str, base: dict[str, Any], override: dict[str, Any]
    ) -> ParameterDef | None:
        prefix = f"overrides.{name}"
        unknown = [k for k in override if k not in ParameterDef.model_fields]
        for k in unknown:
            self.error(
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
            for loc, message in _pydantic_errors(exc, ParameterDef.model_fields):
                self.error(_loc_key(prefix, loc), message)
            return None
        problems = check_definition(defn, need_binding=True)
        for field_name, message in problems:
            top = field_name.split(".")[0].split("[")[0]
            where = prefix if top in override else f"parameters.{name}"
            self.error(f"{where}.{field_name}", message)
        return None if problems else defn

    def bind(
        self, parameters: dict[str, ParameterDef], graph: dict[str, Any]
    ) -> tuple[dict[str, list[InputRef]], dict[str, ResolvedBypass]]:
        graph_name = display_path(self.graph_path) if self.graph_path else "the graph"
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
                        self.error(key, f"{how} titled '{node_ref}' in {graph_name}")
                        continue
                    node_id = titled[0]
                else:
                    found, why = find_node(graph, node_ref)
                    if found is None:
                        self.error(key, f"{why} in {graph_name}")
                        continue
                    node_id = found
                inputs = graph[node_id]["inputs"]
                class_type = graph[node_id]["class_type"]
                if input_name not in inputs:
                    have = ", ".join(inputs) or "none"
                    self.error(
                        key,
                        f"node {node_id} ({class_type}) has no input '{input_name}' "
                        f"in {graph_name} (inputs: {have})",
                    )
                    continue
                if is_link(inputs[input_name]):
                    self.error(
                        key,
                        f"input '{input_name}' of node {node_id} ({class_type}) is a link from "
                        f"node {inputs[input_name][0]}; bind parameters to literal inputs",
                    )
                    continue
                ref = InputRef(node_id=node_id, input=input_name)
                if ref.key() in owner and owner[ref.key()] != name:
                    self.error(
                        key, f"input {ref.key()} is already set by parameter '{owner[ref.key()]}'"
                    )
                    continue
                owner[ref.key()] = name
                if ref not in refs:
                    refs.append(ref)
            bindings[name] = refs
            if defn.bypass is not None:
                resolved = self.resolve_bypass(name, defn, graph, graph_name)
                if resolved is not None:
                    bypasses[name] = resolved
        return bindings, bypasses

    def resolve_bypass(
        self, name: str, defn: ParameterDef, graph: dict[str, Any], graph_name: str
    ) -> ResolvedBypass | None:
        assert defn.bypass is not None
        key = f"parameters.{name}.bypass"
        node_id, why = find_node(graph, defn.bypass.node)
        if node_id is None:
            self.error(f"{key}.node", f"{why} in {graph_name}")
            return None
        inputs = graph[node_id]["inputs"]
        class_type = graph[node_id]["class_type"]
        ok = True
        for index, input_name in defn.bypass.outputs.items():
            if input_name not in inputs:
                self.error(
                    f"{key}.outputs.{index}",
                    f"node {node_id} ({class_type}) has no input '{input_name}' in {graph_name}",
                )
                ok = False
        for consumer_id, consumer in graph.items():
            for input_name, value in consumer["inputs"].items():
                if is_link(value) and value[0] == node_id and value[1] not in defn.bypass.outputs:
                    self.error(
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

    def resolve_outputs(self, outputs: list[str] | None, graph: dict[str, Any]) -> list[str] | None:
        if outputs is None:
            return None
        resolved: list[str] = []
        for i, ref in enumerate(outputs):
            node_id, why = find_node(graph, ref)
            if node_id is None:
                self.error(f"outputs[{i}]", f"{why} in the graph")
            elif node_id not in resolved:
                resolved.append(node_id)
        return resolved


def load_base(path: Path) -> tuple[dict[str, dict[str, Any]], set[str], list[ManifestError], bool]:
    """base.yaml's definitions: (valid raw definitions, invalid names, errors, unreadable)."""
    shown = display_path(path)
    data, problem = _read_yaml(path)
    if problem is not None:
        return {}, set(), [ManifestError(shown, None, None, problem)], True
    if data is None:
        return {}, set(), [], False
    if not isinstance(data, dict):
        return (
            {},
            set(),
            [ManifestError(shown, None, None, "must map parameter names to definitions")],
            True,
        )
    valid: dict[str, dict[str, Any]] = {}
    invalid: set[str] = set()
    errors: list[ManifestError] = []
    for name, raw in data.items():
        key = str(name)
        if not isinstance(name, str) or not PARAM_NAME_PATTERN.match(name):
            errors.append(
                ManifestError(shown, None, key, "not a valid parameter name (letters, digits, '_')")
            )
            invalid.add(key)
            continue
        if not isinstance(raw, dict):
            errors.append(
                ManifestError(shown, None, key, "a parameter definition must be a mapping")
            )
            invalid.add(key)
            continue
        try:
            defn = ParameterDef.model_validate(raw)
        except ValidationError as exc:
            for loc, message in _pydantic_errors(exc, ParameterDef.model_fields):
                errors.append(ManifestError(shown, None, _loc_key(name, loc), message))
            invalid.add(name)
            continue
        problems = check_definition(defn, need_binding=False)
        for field_name, message in problems:
            errors.append(ManifestError(shown, None, f"{name}.{field_name}", message))
        if problems:
            invalid.add(name)
        else:
            valid[name] = raw
    return valid, invalid, errors, False


def load_manifests(manifests_dir: Path, workflows_dir: Path) -> LoadResult:
    """Load every workflow; problems are returned as errors, never raised."""
    base_path = manifests_dir / BASE_FILE
    workflows_path = manifests_dir / WORKFLOWS_FILE
    errors: list[ManifestError] = []
    for directory in (manifests_dir, workflows_dir):
        if not directory.is_dir():
            errors.append(ManifestError(display_path(directory), None, None, "directory not found"))
    base_raw, base_invalid, base_errors, base_unreadable = load_base(base_path)
    errors.extend(base_errors)
    shown = display_path(workflows_path)
    data, problem = _read_yaml(workflows_path)
    if problem is None and data is not None and not isinstance(data, dict):
        problem = "must map workflow ids to workflow entries"
    if problem is not None:
        errors.append(ManifestError(shown, None, None, problem))
    graph_files = sorted(workflows_dir.glob("*.json")) if workflows_dir.is_dir() else []
    entries: dict[Any, Any] = data if isinstance(data, dict) else {}
    extra: list[Path] = []
    for raw in entries.values():
        if isinstance(raw, dict) and isinstance(raw.get("workflow_file"), str):
            # Graphs in subfolders are not in the top-level listing the registry watches.
            relative = Path(raw["workflow_file"])
            if (
                not relative.is_absolute()
                and ".." not in relative.parts
                and len(relative.parts) > 1
            ):
                extra.append(workflows_dir / relative)
    revision = content_revision(
        [
            (f"manifests/{BASE_FILE}", base_path),
            (f"manifests/{WORKFLOWS_FILE}", workflows_path),
            *((f"workflows/{p.relative_to(workflows_dir)}", p) for p in [*graph_files, *extra]),
        ]
    )
    result = LoadResult(revision=revision, workflows={}, errors=errors, extra_files=extra)
    if problem is not None or base_unreadable:
        result.unreadable = True
        return result
    for workflow_id, raw in entries.items():
        loader = _WorkflowLoader(str(workflow_id), shown, workflows_dir, base_raw, base_invalid)
        manifest = loader.load(raw, revision)
        errors.extend(loader.errors)
        if manifest is None:
            result.failed.add(str(workflow_id))
        else:
            result.workflows[manifest.id] = manifest
    return result
