"""Schedules as tests drive them: a stack whose `schedule_probe` workflow a test can make refuse
stored params, schedule specs that never fire on their own, and waits for runs and tasks."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.support.waiting import poll_json, poll_task

# Extra workflows on stock image nodes only: `seeded_smoke` draws a "random" seed into the fill
# colour (so each run's resolved seed shows in its result), `schedule_probe` is the one tests
# edit to invalidate a stored schedule's params.
EXTRA_WORKFLOWS = """
seeded_smoke:
  workflow_file: smoke_image.json
  description: Test only - a random seed becomes the fill colour.
  parameters: [seed, width, height]
  overrides:
    seed: {max: 16777215, targets: [{node: Empty Image, input: color}]}
    width: {default: 8, min: 1, targets: [{node: Empty Image, input: width}]}
    height: {default: 8, min: 1, targets: [{node: Empty Image, input: height}]}
  timeout: 60

schedule_probe:
  workflow_file: smoke_image.json
  description: Test only - edited by tests to make stored params invalid.
  parameters: [width, height]
  overrides:
    width: {default: 8, min: 1, max: %(width_max)d, targets: [{node: Empty Image, input: width}]}
    height: {default: 8, min: 1, targets: [{node: Empty Image, input: height}]}
  timeout: 60
"""


@dataclass
class ScheduleStack:
    url: str
    temporal_address: str
    workflows_yaml: Path
    shipped_text: str

    def set_probe_width_max(self, width_max: int) -> None:
        """Rewrite workflows.yaml with `schedule_probe` accepting widths up to `width_max`."""
        previous = self.workflows_yaml.stat().st_mtime
        self.workflows_yaml.write_text(
            self.shipped_text + EXTRA_WORKFLOWS % {"width_max": width_max}
        )
        # A later mtime even within the file system's timestamp granularity.
        moment = max(time.time(), previous + 1)
        os.utime(self.workflows_yaml, (moment, moment))


PROBE_WIDTH_MAX = 64


def quiet_spec() -> dict[str, Any]:
    """Hourly, but only from a week from now: never fires during a test."""
    start = datetime.now(UTC) + timedelta(days=7)
    return {"intervals": [{"every": "1h"}], "start_at": start.isoformat()}


class Schedules:
    """Creates schedules through the API and deletes whatever is left at the end of the test."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.ids: list[str] = []

    async def create(self, **body: Any) -> dict[str, Any]:
        body.setdefault("spec", quiet_spec())
        response = await self.http.post("/schedules", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        self.ids.append(created["schedule_id"])
        return created

    async def cleanup(self) -> None:
        for schedule_id in self.ids:
            with contextlib.suppress(httpx.HTTPError):  # a test may have deleted it already
                await self.http.delete(f"/schedules/{schedule_id}")


async def wait_for_schedule(
    http: httpx.AsyncClient, schedule_id: str, condition: Any, timeout: float = 30
) -> dict[str, Any]:
    """GET /schedules/{id} until `condition(body)` holds."""
    return await poll_json(http, f"/schedules/{schedule_id}", condition, timeout, interval=0.1)


async def wait_for_runs(
    http: httpx.AsyncClient, schedule_id: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    body = await wait_for_schedule(
        http, schedule_id, lambda b: len(b["recent_runs"]) >= count, timeout
    )
    runs: list[dict[str, Any]] = body["recent_runs"]
    return runs


async def wait_for_task(
    http: httpx.AsyncClient,
    task_id: str,
    wanted: frozenset[str] = frozenset({"SUCCESS", "FAILURE", "CANCELLED"}),
    timeout: float = 60,
) -> dict[str, Any]:
    return await poll_task(http, task_id, lambda body: body["status"] in wanted, timeout)
