"""`comfy-temporal schedules ...` against the test API: the real argparse tree and real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from api.cli.devstack.http_server import free_port
from api.cli.main import main
from tests.support.schedules import Schedules, ScheduleStack, wait_for_runs, wait_for_task
from tests.support.stack import generation_stack

CONSOLE_SCRIPT = Path(sys.executable).with_name("comfy-temporal")


async def cli(*args: str) -> int:
    """Runs the command in a worker thread: the API it talks to serves on this event loop."""
    return await asyncio.to_thread(main, ["schedules", *args])


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=7)).isoformat()


async def test_create_prints_the_schedule_the_api_then_serves(
    http: httpx.AsyncClient,
    schedules: Schedules,
    schedule_stack: ScheduleStack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    schedule_id = f"cli-{uuid.uuid4().hex[:8]}"
    schedules.ids.append(schedule_id)
    code = await cli(
        "create", "smoke_image", "--api", schedule_stack.url, "--id", schedule_id,
        "-p", "width=8", "-p", "filename_prefix=cli_run", "--every", "1h/5m",
        "--start-at", _future(), "--overlap", "buffer_all", "--note", "from the CLI", "--json",
    )  # fmt: skip

    assert code == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    served = (await http.get(f"/schedules/{schedule_id}")).json()
    assert printed["schedule_id"] == served["schedule_id"] == schedule_id
    assert served["params"] == {"width": 8, "filename_prefix": "cli_run"}
    assert served["spec"]["intervals"] == [{"every": "1h", "offset": "5m"}]
    assert served["policy"]["overlap"] == "buffer_all"
    assert served["state"]["note"] == "from the CLI"


async def test_list_shows_the_schedule_with_its_workflow(
    schedules: Schedules, schedule_stack: ScheduleStack, capsys: pytest.CaptureFixture[str]
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image"))["schedule_id"]

    async with asyncio.timeout(20):  # the listing is eventually consistent
        while True:
            assert await cli("list", "--api", schedule_stack.url) == 0
            out = capsys.readouterr().out
            rows = [line.split() for line in out.splitlines()[1:]]
            if any(row[:3] == [schedule_id, "smoke_image", "active"] for row in rows):
                break
            await asyncio.sleep(0.2)
    assert out.splitlines()[0].split()[:3] == ["SCHEDULE", "WORKFLOW", "STATE"]


async def test_show_prints_workflow_params_and_state(
    schedules: Schedules, schedule_stack: ScheduleStack, capsys: pytest.CaptureFixture[str]
) -> None:
    schedule_id = (
        await schedules.create(workflow_id="smoke_image", params={"width": 8}, paused=True)
    )["schedule_id"]

    assert await cli("show", schedule_id, "--api", schedule_stack.url) == 0

    out = capsys.readouterr().out
    assert f"schedule    {schedule_id}" in out
    assert 'workflow    smoke_image  params {"width": 8}' in out
    assert "state       paused" in out


async def test_pause_and_unpause_change_the_state_the_api_reports(
    http: httpx.AsyncClient,
    schedules: Schedules,
    schedule_stack: ScheduleStack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image"))["schedule_id"]

    assert await cli("pause", schedule_id, "--note", "holiday", "--api", schedule_stack.url) == 0
    state = (await http.get(f"/schedules/{schedule_id}")).json()["state"]
    assert state == {"paused": True, "note": "holiday"}
    assert await cli("unpause", schedule_id, "--api", schedule_stack.url) == 0
    assert (await http.get(f"/schedules/{schedule_id}")).json()["state"]["paused"] is False
    assert "state       active" in capsys.readouterr().out


async def test_trigger_starts_a_run_that_succeeds(
    http: httpx.AsyncClient,
    schedules: Schedules,
    schedule_stack: ScheduleStack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image", params={"width": 5}))[
        "schedule_id"
    ]

    assert await cli("trigger", schedule_id, "--api", schedule_stack.url) == 0

    assert f"triggered {schedule_id}" in capsys.readouterr().out
    (run,) = await wait_for_runs(http, schedule_id, 1)
    assert (await wait_for_task(http, run["task_id"]))["status"] == "SUCCESS"


async def test_delete_removes_the_schedule_and_show_then_reports_it_missing(
    http: httpx.AsyncClient,
    schedules: Schedules,
    schedule_stack: ScheduleStack,
    capsys: pytest.CaptureFixture[str],
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image"))["schedule_id"]

    assert await cli("delete", schedule_id, "--api", schedule_stack.url) == 0
    assert (await http.get(f"/schedules/{schedule_id}")).status_code == 404
    capsys.readouterr()
    assert await cli("show", schedule_id, "--api", schedule_stack.url) == 1
    assert f"no schedule with id '{schedule_id}'" in capsys.readouterr().err


async def test_bad_params_are_reported_by_field_without_a_trace(
    schedule_stack: ScheduleStack, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await cli(
        "create", "smoke_image", "-p", "width=wide", "--every", "1h", "--api", schedule_stack.url
    )

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: params.width: ")
    assert "Traceback" not in err


async def test_unreachable_api_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    assert await cli("list", "--api", url) == 1

    assert f"cannot reach the API at {url}" in capsys.readouterr().err


async def test_console_script_reads_the_api_url_from_comfy_api_url(
    schedules: Schedules, schedule_stack: ScheduleStack
) -> None:
    schedule_id = (await schedules.create(workflow_id="smoke_image"))["schedule_id"]
    env = {**os.environ, "COMFY_API_URL": schedule_stack.url}

    completed = await asyncio.to_thread(
        subprocess.run,
        [str(CONSOLE_SCRIPT), "schedules", "show", schedule_id, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["schedule_id"] == schedule_id


async def test_schedules_commands_send_the_api_key_an_api_requires(
    temporal_client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with generation_stack(
        temporal_client, tmp_path, control_worker=None, api_keys=("schedules-key",)
    ) as stack:
        url = stack.url
        without = await cli("list", "--api", url)
        _, refused = capsys.readouterr()
        with_key = await cli("list", "--api", url, "--api-key", "schedules-key", "--json")
        listed, _ = capsys.readouterr()
    assert without == 1
    assert refused.startswith("error: ") and "API key" in refused
    assert with_key == 0
    assert "schedules" in json.loads(listed)
