"""`comfy-temporal submit` and `comfy-temporal tasks list|show|cancel`: the HTTP API from a shell.

Talks to a running API (--api, env COMFY_API_URL, default http://127.0.0.1:8000; an API key from
--api-key or env COMFY_API_KEY). `submit --wait` follows the task's Server-Sent Events
(GET /tasks/{id}/events) with a progress bar, resuming with Last-Event-ID when the connection
drops, and downloads the outputs. Exit codes: 0 success, 1 failure (the readable reason is
printed), 130 Ctrl-C (waiting stops; the task goes on).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from api.cli.api_client import (
    EXIT_INTERRUPTED,
    ApiClient,
    CommandError,
    api_client_flags,
    client_command,
    error_text,
    print_json,
)
from manifests.cli import parse_param

TERMINAL_STATUSES = ("SUCCESS", "FAILURE", "CANCELLED")
# A stream that drops this many times in a row, with no event between, is given up on.
_MAX_RECONNECTS = 10


def _task_path(task_id: str, action: str = "") -> str:
    return f"/tasks/{quote(task_id, safe='')}" + (f"/{action}" if action else "")


# ------------------------------------------------------------------ Server-Sent Events


@dataclass
class ServerEvent:
    id: str | None
    event: str
    data: dict[str, Any]


def parse_events(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """SSE framing: fields until a blank line; comment lines (keep-alives) start with ':'."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield ServerEvent(
                    fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        fields[name] = f"{fields[name]}\n{value}" if name in fields else value


def follow_task(
    http: httpx.Client, task_id: str, on_event: Callable[[ServerEvent], None]
) -> dict[str, Any]:
    """Follows the task's events until its final status; returns the task as GET /tasks/{id}."""
    last_id: str | None = None
    failures = 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with http.stream("GET", _task_path(task_id, "events"), headers=headers) as response:
                if response.status_code == 204:  # the final event was already delivered
                    break
                if response.status_code >= 400:
                    response.read()
                    raise CommandError(error_text(response))
                for event in parse_events(response.iter_lines()):
                    failures = 0
                    last_id = event.id or last_id
                    on_event(event)
                    if event.event == "status" and event.data.get("status") in TERMINAL_STATUSES:
                        return event.data
        except httpx.HTTPError as err:
            failures += 1
            if failures > _MAX_RECONNECTS:
                raise CommandError(f"lost the event stream of {task_id}: {err}") from err
            time.sleep(min(0.2 * failures, 2.0))  # back off before reconnecting
        # The server ends streams now and then; reconnecting resumes after the last event.
    response = http.get(_task_path(task_id))
    if response.status_code >= 400:
        raise CommandError(error_text(response))
    task: dict[str, Any] = response.json()
    return task


# ------------------------------------------------------------------ progress display


def _describe(task: dict[str, Any]) -> str:
    status = task.get("status", "?")
    queue = task.get("queue") or {}
    progress = task.get("progress") or {}
    if status == "PENDING":
        phase = {
            "preparing": "preparing",
            "waiting_for_gpu_worker": "waiting for a GPU worker",
            "submitting_to_comfyui": "being submitted to ComfyUI",
            "downloading_model": "downloading a model file",
            "queued_in_comfyui": "queued in ComfyUI",
        }.get(queue.get("phase", ""), "queued")
        if queue.get("backlog"):
            phase += f", {queue['backlog']} in queue"
        download = queue.get("download") or {}
        if download:
            total = download.get("bytes_total")
            phase += f" for {download.get('param')}: {download.get('bytes_done', 0)}"
            phase += f"/{total} bytes" if total else " bytes"
        return f"PENDING  {phase}"
    if status == "PROGRESS":
        text = "PROGRESS"
        if progress.get("worker"):
            text += f"  on {progress['worker']}"
        if progress.get("class_type") or progress.get("node"):
            text += f"  {progress.get('class_type') or 'node ' + str(progress.get('node'))}"
        if progress.get("step") is not None and progress.get("max"):
            text += f" {progress['step']}/{progress['max']}"
        return text
    return str(status)


class ProgressView:
    """A rich progress bar on stderr; status changes are also printed as lines above it."""

    def __init__(self, task_id: str, console: Console) -> None:
        self.task_id = task_id
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.bar = self.progress.add_task("submitted", total=100.0)
        self.status: str | None = None

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_event(self, event: ServerEvent) -> None:
        task = event.data
        status = task.get("status")
        if status != self.status:
            self.status = status
            self.progress.console.print(f"{self.task_id}: {_describe(task)}", markup=False)
        percent = (task.get("progress") or {}).get("percent")
        if status == "SUCCESS":
            percent = 100.0
        self.progress.update(
            self.bar,
            description=_describe(task),
            completed=float(percent) if percent is not None else None,
        )


# ------------------------------------------------------------------ submit


def _unique_path(folder: Path, filename: str) -> Path:
    """`folder/filename`, or `name-1.ext`, `name-2.ext`... when that exists: never overwrite."""
    path = folder / Path(filename).name
    counter = 1
    while path.exists():
        path = folder / f"{Path(filename).stem}-{counter}{Path(filename).suffix}"
        counter += 1
    return path


def download_outputs(http: httpx.Client, task: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    for output in task["result"]["outputs"]:
        path = _unique_path(folder, output["filename"])
        partial = path.with_name(f".{path.name}.partial")
        with http.stream("GET", output["url"]) as response:
            if response.status_code >= 400:
                response.read()
                raise CommandError(f"download of {output['filename']}: {error_text(response)}")
            with partial.open("wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)
        partial.replace(path)
        saved.append(path)
    return saved


def _failure_text(task: dict[str, Any]) -> str:
    reason = task.get("result")
    if not isinstance(reason, str):
        error = task.get("error") or {}
        reason = error.get("message") or task.get("temporal_status") or "no reason given"
    return f"{task['task_id']}: {task['status']}: {reason}"


def _submit(args: argparse.Namespace, api: ApiClient) -> int:
    params: dict[str, Any] = {}
    for name, value in args.params:
        if name in params:
            raise CommandError(f"parameter '{name}' given twice")
        params[name] = value
    options = dict(args.options)
    if args.priority is not None:
        options["priority"] = args.priority
    body: dict[str, Any] = {"workflow_id": args.workflow_id, "params": params}
    if options:
        body["options"] = options
    task_id: str = api.request("POST", "/generate", json=body).json()["task_id"]
    print(task_id, flush=True)  # stdout: the id alone, for scripts
    # No markup or highlighting: task ids and reasons are printed as they are.
    console = Console(stderr=True, highlight=False)
    if not args.wait:
        console.print(f"follow it: comfy-temporal tasks show {task_id}", markup=False)
        return 0
    timeout = httpx.Timeout(args.timeout, read=max(args.timeout, 60.0))
    with api.http(timeout) as http:
        try:
            with ProgressView(task_id, console) as view:
                task = follow_task(http, task_id, view.on_event)
        except KeyboardInterrupt:
            console.print(
                f"stopped waiting; the task goes on. See it: comfy-temporal tasks show {task_id}; "
                f"stop it: comfy-temporal tasks cancel {task_id}",
                markup=False,
            )
            return EXIT_INTERRUPTED
        except httpx.HTTPError as err:
            raise api.unreachable(err) from err
        if task["status"] != "SUCCESS":
            print(_failure_text(task), file=sys.stderr)
            return 1
        for path in download_outputs(http, task, args.out):
            print(path, flush=True)
    return 0


# ------------------------------------------------------------------ tasks list | show | cancel


def _list(args: argparse.Namespace, api: ApiClient) -> int:
    query: dict[str, Any] = {"page_size": args.limit}
    for key in ("workflow_id", "status", "schedule_id", "page_token"):
        if getattr(args, key):
            query[key] = getattr(args, key)
    page = api.request("GET", "/tasks", params=query).json()
    if args.json:
        print_json(page)
        return 0
    rows = [("TASK", "WORKFLOW", "STATUS", "CREATED")]
    for task in page["tasks"]:
        rows.append(
            (task["task_id"], task["workflow_id"] or "-", task["status"], task["created_at"] or "-")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if page.get("next_page_token"):
        print(f"more: --page-token {page['next_page_token']}", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace, api: ApiClient) -> int:
    task = api.request("GET", _task_path(args.task_id)).json()
    if args.json:
        print_json(task)
        return 0
    print(f"task        {task['task_id']}")
    print(f"workflow    {task.get('workflow_id') or '-'}")
    print(f"status      {_describe(task)}  (Temporal: {task['temporal_status']})")
    print(f"created     {task.get('created_at') or '-'}")
    if task.get("closed_at"):
        print(f"closed      {task['closed_at']}")
    progress = task.get("progress")
    if progress and task["status"] == "PROGRESS":
        print(f"progress    {progress['percent']:.0f}%")
    result = task.get("result")
    if isinstance(result, dict):
        print(f"worker      {result['worker']}  attempts {result['attempts']}")
        print(f"params      {json.dumps(result['params'])}")
        for output in result["outputs"]:
            print(f"output      {output['url']}")
    elif isinstance(result, str):
        print(f"reason      {result}")
    return 0


def _cancel(args: argparse.Namespace, api: ApiClient) -> int:
    query = {"reason": args.reason} if args.reason else None
    answer = api.request("POST", _task_path(args.task_id, "cancel"), params=query).json()
    if args.json:
        print_json(answer)
    else:
        print(f"{answer['task_id']}: {answer['message']}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `submit` and `tasks list|show|cancel`."""
    common = api_client_flags()

    submit = subparsers.add_parser(
        "submit",
        parents=[common],
        help="start a generation; with --wait, follow it and download its outputs",
        description="Start a generation. With --wait: show its progress live, download its "
        "outputs into --out, exit 0 on success and 1 (with the reason) on failure. Ctrl-C "
        "while waiting only stops waiting (exit 130): the task goes on.",
    )
    submit.add_argument("workflow_id", metavar="WORKFLOW_ID", help="a workflow of GET /workflows")
    submit.add_argument(
        "-p",
        "--param",
        dest="params",
        action="append",
        type=parse_param,
        default=[],
        metavar="NAME=VALUE",
        help="a parameter, repeatable; VALUE is JSON when it parses (steps=20 is a number), "
        "else text (prompt=a cat), as for `comfy-temporal render`",
    )
    submit.add_argument(
        "--option",
        dest="options",
        action="append",
        type=parse_param,
        default=[],
        metavar="NAME=VALUE",
        help="a request option, repeatable, e.g. worker=gpu-host-gpu0",
    )
    submit.add_argument("--priority", type=int, choices=range(1, 6), help="1 (highest) to 5")
    submit.add_argument("--wait", action="store_true", help="follow the task until it ends")
    submit.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="with --wait: where outputs are saved (default: the current directory)",
    )
    submit.set_defaults(func=client_command(_submit))

    tasks = subparsers.add_parser(
        "tasks",
        help="list, show and cancel tasks through the API",
        description="Tasks are Temporal workflow executions: `temporal workflow "
        "list/describe/cancel` see the same ones.",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    commands = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")

    listing = commands.add_parser("list", parents=[common], help="tasks, newest first")
    listing.add_argument("--workflow-id", help="only tasks of this workflow")
    listing.add_argument(
        "--status", choices=["PENDING", "PROGRESS", "SUCCESS", "FAILURE", "CANCELLED"]
    )
    listing.add_argument("--schedule-id", help="only runs of this schedule")
    listing.add_argument("--limit", type=int, default=50, help="page size (default 50)")
    listing.add_argument("--page-token", help="the next page, as printed by the previous one")
    listing.set_defaults(func=client_command(_list))

    show = commands.add_parser("show", parents=[common], help="status, progress and result")
    show.add_argument("task_id")
    show.set_defaults(func=client_command(_show))

    cancel = commands.add_parser(
        "cancel",
        parents=[common],
        help="cancel a task (a queued prompt is removed, a running one interrupted)",
    )
    cancel.add_argument("task_id")
    cancel.add_argument("--reason", help="recorded in the task's history and result")
    cancel.set_defaults(func=client_command(_cancel))
