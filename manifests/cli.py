"""`comfy-temporal manifests check` and `comfy-temporal render`: the manifest layer from a shell."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from manifests.errors import ParamsInvalid, UnknownWorkflow
from manifests.loading import LoadResult, load_manifests
from manifests.registry import DEFAULT_MANIFESTS_DIR, DEFAULT_WORKFLOWS_DIR
from manifests.render import render_prompt

_DIR_HELP = "{what} directory (default: ${env}, else the repository's {name}/)"


def _add_dir_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifests",
        type=Path,
        default=None,
        metavar="DIR",
        help=_DIR_HELP.format(
            what="manifests (base.yaml, workflows.yaml, loras.yaml)",
            env="MANIFESTS_DIR",
            name="manifests",
        ),
    )
    parser.add_argument(
        "--workflows",
        type=Path,
        default=None,
        metavar="DIR",
        help=_DIR_HELP.format(
            what="workflow graphs (*.json)", env="WORKFLOWS_DIR", name="workflows"
        ),
    )


def parse_param(text: str) -> tuple[str, Any]:
    """`name=value`; the value is JSON when it parses (20 -> int, false -> bool), else a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `manifests` command group and the `render` command."""
    manifests_parser = subparsers.add_parser(
        "manifests", help="check workflow manifests", description="Work with workflow manifests."
    )
    manifests_commands = manifests_parser.add_subparsers(
        dest="manifests_command", required=True, metavar="COMMAND"
    )
    check = manifests_commands.add_parser(
        "check",
        help="load every manifest and graph; list every error",
        description="Load base.yaml, workflows.yaml and every graph; print errors; exit 1 if any.",
    )
    _add_dir_options(check)
    check.set_defaults(func=run_check)

    render = subparsers.add_parser(
        "render",
        help="print the ComfyUI graph a request would run",
        description=(
            'Validate parameters and print {"prompt": <ComfyUI API graph>, "params": <resolved> } '
            "as JSON. Exit 2 when the parameters are invalid or the workflow is unknown."
        ),
    )
    render.add_argument("workflow_id", metavar="WORKFLOW_ID")
    render.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=parse_param,
        default=[],
        metavar="NAME=VALUE",
        help=(
            "a parameter; repeat for several. VALUE is read as JSON when it parses "
            "(steps=20 is an integer, FBC_optimize=false a boolean, cfg=7.5 a number), otherwise "
            "as a string (prompt=a cat). Quote JSON strings to keep them strings: "
            "seed='\"random\"' "
            'is the same as seed=random, steps=\'"20"\' is the string "20".'
        ),
    )
    _add_dir_options(render)
    render.set_defaults(func=run_render)


def _load(args: argparse.Namespace) -> LoadResult:
    """What `manifests check` and `render` read: the flags, over the same environment variables
    the API and the workers read (through their settings, which this package cannot import), over
    the bundled folders. The one place these commands read the environment."""
    manifests_dir = args.manifests or Path(os.environ.get("MANIFESTS_DIR") or DEFAULT_MANIFESTS_DIR)
    workflows_dir = args.workflows or Path(os.environ.get("WORKFLOWS_DIR") or DEFAULT_WORKFLOWS_DIR)
    experimental = os.environ.get("COMFY_EXPERIMENTAL_WORKFLOWS", "").strip().lower()
    # The loader, not the registry: a one-shot command has no last good state to keep, and the
    # registry's log lines would repeat every error printed here.
    return load_manifests(
        manifests_dir, workflows_dir, experimental=experimental not in {"0", "false", "no", "off"}
    )


def run_check(args: argparse.Namespace) -> int:
    result = _load(args)
    for error in result.errors:
        print(error)
    count = len(result.workflows)
    if result.errors:
        print(f"{len(result.errors)} error(s); {count} workflow(s) loaded", file=sys.stderr)
        return 1
    names = ", ".join(
        f"{m.id} (experimental)" if m.experimental else m.id for m in result.workflows.values()
    )
    loras = f", {len(result.loras)} LoRA(s) described" if result.loras else ""
    print(f"ok: {count} workflow(s) ({names}){loras}, revision {result.revision}")
    return 0


def run_render(args: argparse.Namespace) -> int:
    result = _load(args)
    for error in result.errors:
        if error.workflow in (None, args.workflow_id):
            print(f"warning: {error}", file=sys.stderr)
    params: dict[str, Any] = {}
    for name, value in args.params:
        if name in params:
            print(f"error: parameter '{name}' given twice", file=sys.stderr)
            return 2
        params[name] = value
    manifest = result.workflows.get(args.workflow_id)
    if manifest is None:
        print(
            f"error: {UnknownWorkflow(args.workflow_id, list(result.workflows))}", file=sys.stderr
        )
        return 2
    try:
        rendered = render_prompt(manifest, params, revision=result.revision)
    except ParamsInvalid as exc:
        for param_error in exc.errors:
            print(f"error: {param_error.param}: {param_error.reason}", file=sys.stderr)
        return 2
    text = json.dumps({"prompt": rendered.prompt, "params": rendered.params}, indent=2)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`; the reader has what it wanted
        pass
    return 0
