"""What `submit`, `tasks` and `schedules` share to talk to a running API: where it is and the key
(ApiClientSettings, flags over the environment), one request that turns the API's errors into
the readable line the user gets, and how a command ends (exit 1 on an error, 130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import Field

from activities.workers.settings import ProcessSettings, add_setting_flag, settings_from_args

DEFAULT_API_URL = "http://127.0.0.1:8000"
EXIT_INTERRUPTED = 130


class ApiClientSettings(ProcessSettings):
    """The API a client command talks to: the same from a laptop and against a cluster."""

    api_url: str = Field(
        default=DEFAULT_API_URL, alias="COMFY_API_URL", description="API base URL."
    )
    api_key: str | None = Field(
        default=None, alias="COMFY_API_KEY", description="Key sent when the API asks for one."
    )


class CommandError(Exception):
    """A problem the user can fix; printed without a trace."""


def api_client_flags() -> argparse.ArgumentParser:
    """The flags every command that talks to the API shares: --api, --timeout, --api-key."""
    flags = argparse.ArgumentParser(add_help=False)
    add_setting_flag(
        flags, ApiClientSettings, "api_url", "--api", metavar="URL", help="API base URL"
    )
    flags.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds")
    add_setting_flag(
        flags,
        ApiClientSettings,
        "api_key",
        "--api-key",
        metavar="KEY",
        help="sent as 'Authorization: Bearer' when the API needs one",
    )
    return flags


def error_text(response: httpx.Response) -> str:
    """The API's own message: one line per field for a 422, else its detail."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        return f"HTTP {response.status_code}: {response.text.strip()[:500]}"
    if isinstance(detail, list):
        lines = []
        for entry in detail:
            loc = ".".join(str(p) for p in entry.get("loc", []) if p != "body")
            lines.append(f"{loc}: {entry.get('msg')}" if loc else str(entry.get("msg")))
        return "\n".join(lines)
    return str(detail)


@dataclass(frozen=True)
class ApiClient:
    """One command's connection settings: the flags given, over the environment."""

    url: str
    api_key: str | None
    timeout: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ApiClient:
        settings = settings_from_args(ApiClientSettings, args)
        return cls(settings.api_url.rstrip("/"), settings.api_key, args.timeout)

    def http(self, timeout: httpx.Timeout | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, timeout=timeout or self.timeout, headers=headers)

    def unreachable(self, err: httpx.HTTPError) -> CommandError:
        return CommandError(f"cannot reach the API at {self.url}: {err}")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an HTTP error status or no answer is a CommandError."""
        try:
            with self.http() as http:
                response = http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise self.unreachable(err) from err
        if response.status_code >= 400:
            raise CommandError(error_text(response))
        return response


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def client_command(
    func: Callable[[argparse.Namespace, ApiClient], int],
) -> Callable[[argparse.Namespace], int]:
    """The command as the CLI runs it: its API client built once from the flags and the
    environment; a CommandError printed as one line (exit 1); Ctrl-C ends it quietly (exit 130)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args, ApiClient.from_args(args)))
        except CommandError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    return run
