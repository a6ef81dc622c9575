"""`comfy-temporal schedules ...`: recurring generations through the HTTP API.

Talks to a running API (--api, env COMFY_API_URL, default http://127.0.0.1:8000), so it works the
same against a laptop and a cluster. Errors print the API's own message (field and reason).
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from api.cli.api_client import ApiClient, CommandError, api_client_flags, client_command, print_json
from manifests.cli import parse_param

_OVERLAP_CHOICES = [
    "skip",
    "buffer_one",
    "buffer_all",
    "cancel_other",
    "terminate_other",
    "allow_all",
]


def _interval(text: str) -> dict[str, str]:
    """EVERY or EVERY/OFFSET, e.g. 1h or 1h/5m."""
    every, _, offset = text.partition("/")
    if not every:
        raise argparse.ArgumentTypeError(f"expected EVERY[/OFFSET] like 1h or 1h/5m, got {text!r}")
    return {"every": every, **({"offset": offset} if offset else {})}


def _path(schedule_id: str, action: str = "") -> str:
    return f"/schedules/{quote(schedule_id, safe='')}" + (f"/{action}" if action else "")


def _print_schedule(schedule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(schedule)
        return
    spec = schedule["spec"]
    state = schedule["state"]
    when = [*spec["cron"], *(f"every {i['every']}" for i in spec["intervals"])]
    print(f"schedule    {schedule['schedule_id']}")
    print(f"workflow    {schedule['workflow_id']}  params {json.dumps(schedule['params'])}")
    print(f"when        {'; '.join(when)}  ({spec.get('time_zone') or 'UTC'})")
    print(f"policy      overlap {schedule['policy']['overlap']}", end="")
    print(", pause on failure" if schedule["policy"]["pause_on_failure"] else "")
    paused = "paused" if state["paused"] else "active"
    print(f"state       {paused}" + (f"  ({state['note']})" if state.get("note") else ""))
    print(f"runs        {schedule['num_runs']} started, {schedule['num_skipped_overlap']} skipped")
    for moment in schedule["next_run_times"][:3]:
        print(f"next        {moment}")
    for run in schedule["recent_runs"]:
        print(f"recent      {run['task_id']}  {run['status'] or 'gone'}")


def _create(args: argparse.Namespace, api: ApiClient) -> int:
    params: dict[str, Any] = {}
    if args.params_json:
        try:
            params = json.loads(args.params_json)
        except json.JSONDecodeError as err:
            raise CommandError(f"--params-json is not JSON: {err}") from err
        if not isinstance(params, dict):
            raise CommandError("--params-json must be a JSON object")
    params.update(dict(args.param or []))
    spec: dict[str, Any] = {"cron": args.cron or [], "intervals": args.every or []}
    for key in ("time_zone", "start_at", "end_at", "jitter"):
        if getattr(args, key):
            spec[key] = getattr(args, key)
    policy: dict[str, Any] = {"overlap": args.overlap, "pause_on_failure": args.pause_on_failure}
    if args.catchup_window:
        policy["catchup_window"] = args.catchup_window
    body: dict[str, Any] = {
        "workflow_id": args.workflow_id,
        "params": params,
        "spec": spec,
        "policy": policy,
        "paused": args.paused,
    }
    if args.id:
        body["schedule_id"] = args.id
    if args.note:
        body["note"] = args.note
    options = {k: v for k, v in (("worker", args.worker), ("priority", args.priority)) if v}
    if options:
        body["options"] = options
    schedule = api.request("POST", "/schedules", json=body).json()
    _print_schedule(schedule, args.json)
    return 0


def _list(args: argparse.Namespace, api: ApiClient) -> int:
    query = {"workflow_id": args.workflow} if args.workflow else {}
    page = api.request("GET", "/schedules", params=query).json()
    if args.json:
        print_json(page)
        return 0
    rows = [("SCHEDULE", "WORKFLOW", "STATE", "NEXT RUN", "LAST RUN")]
    for s in page["schedules"]:
        rows.append(
            (
                s["schedule_id"],
                s["workflow_id"] or "-",
                "paused" if s["paused"] else "active",
                s["next_run_times"][0] if s["next_run_times"] else "-",
                s["last_run_task_id"] or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _show(args: argparse.Namespace, api: ApiClient) -> int:
    _print_schedule(api.request("GET", _path(args.schedule_id)).json(), args.json)
    return 0


def _pause_or_unpause(args: argparse.Namespace, api: ApiClient) -> int:
    body = {"note": args.note} if args.note else None
    schedule = api.request("POST", _path(args.schedule_id, args.action), json=body).json()
    _print_schedule(schedule, args.json)
    return 0


def _trigger(args: argparse.Namespace, api: ApiClient) -> int:
    body = {k: v for k, v in (("note", args.note), ("overlap", args.overlap)) if v}
    answer = api.request("POST", _path(args.schedule_id, "trigger"), json=body or None).json()
    if args.json:
        print_json(answer)
    else:
        print(f"triggered {answer['schedule_id']}; runs: {answer['tasks_url']}")
    return 0


def _delete(args: argparse.Namespace, api: ApiClient) -> int:
    api.request("DELETE", _path(args.schedule_id))
    print(f"deleted {args.schedule_id}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `schedules create|list|show|pause|unpause|trigger|delete`."""
    schedules = subparsers.add_parser(
        "schedules",
        help="recurring generations (Temporal Schedules) through the API",
        description="Create and steer recurring generations. Each run is an ordinary task; "
        "`temporal schedule list/describe/toggle/trigger` show and steer the same schedules.",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[api_client_flags()])
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    commands = schedules.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")

    create = commands.add_parser(
        "create",
        parents=[common],
        help="create a schedule",
        description="Durations: seconds or text like 30s, 5m, 1h30m, 1d (or ISO 8601 PT1H).",
    )
    create.add_argument("workflow_id", help="a workflow listed by GET /workflows")
    create.add_argument("--id", help="schedule id (default: generated)")
    create.add_argument(
        "--param", "-p", action="append", type=parse_param, metavar="NAME=VALUE", help="repeatable"
    )
    create.add_argument("--params-json", help="all params as one JSON object")
    create.add_argument("--cron", action="append", metavar="EXPR", help="e.g. '0 3 * * *'")
    create.add_argument(
        "--every", action="append", type=_interval, metavar="EVERY[/OFFSET]", help="e.g. 1h/5m"
    )
    create.add_argument("--time-zone", help="IANA name, e.g. Europe/Berlin (default UTC)")
    create.add_argument("--start-at", help="ISO 8601 time with zone; no run before")
    create.add_argument("--end-at", help="ISO 8601 time with zone; no run after")
    create.add_argument("--jitter", help="start each run up to this much later")
    create.add_argument("--overlap", choices=_OVERLAP_CHOICES, default="skip")
    create.add_argument("--catchup-window", help="how late a missed run may still start")
    create.add_argument("--pause-on-failure", action="store_true")
    create.add_argument("--paused", action="store_true", help="create it paused")
    create.add_argument("--note")
    create.add_argument("--worker", help="pin runs to this GPU worker")
    create.add_argument("--priority", type=int, choices=range(1, 6), help="1 (highest) to 5")
    create.set_defaults(func=client_command(_create))

    listing = commands.add_parser("list", parents=[common], help="list schedules")
    listing.add_argument("--workflow", help="only schedules of this workflow")
    listing.set_defaults(func=client_command(_list))

    show = commands.add_parser("show", parents=[common], help="spec, state, next and recent runs")
    show.add_argument("schedule_id")
    show.set_defaults(func=client_command(_show))

    for action, text in (("pause", "pause a schedule"), ("unpause", "unpause a schedule")):
        command = commands.add_parser(action, parents=[common], help=text)
        command.add_argument("schedule_id")
        command.add_argument("--note", help="why (shown in the API and the Web UI)")
        command.set_defaults(func=client_command(_pause_or_unpause), action=action)

    trigger = commands.add_parser("trigger", parents=[common], help="start one run now")
    trigger.add_argument("schedule_id")
    trigger.add_argument("--note")
    trigger.add_argument("--overlap", choices=_OVERLAP_CHOICES, help="for this run only")
    trigger.set_defaults(func=client_command(_trigger))

    delete = commands.add_parser("delete", parents=[common], help="delete a schedule")
    delete.add_argument("schedule_id")
    delete.set_defaults(func=client_command(_delete))
