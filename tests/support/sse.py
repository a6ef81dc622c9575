"""A minimal Server-Sent Events reader for the tests (independent of the CLI client's own)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]
    received: float  # time.time() when the event's last line arrived

    @property
    def position(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.id.split("."))


async def read_events(
    http: httpx.AsyncClient,
    task_id: str,
    *,
    last_event_id: str | None = None,
    until: Callable[[list[Event]], bool] | None = None,
) -> list[Event]:
    """Events of one connection, until the server ends the stream or `until(events)` holds."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    async with http.stream("GET", f"/tasks/{task_id}/events", headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    events.append(
                        Event(
                            fields.get("id", ""),
                            fields.get("event", "message"),
                            json.loads(fields["data"]),
                            time.time(),
                        )
                    )
                    if until is not None and until(events):
                        break
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name in fields else value
    return events


def status_of(event: Event) -> str:
    return str(event.data["status"])
