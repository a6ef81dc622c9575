"""A child process of `comfy-temporal dev` that can always be stopped completely.

Each child runs in its own session (process group), so a Ctrl-C in the terminal reaches only the
parent, which then stops the children in order. Stopping sends a signal to the group, waits a grace
period, then SIGKILLs the group and every process that was a descendant when the stop began (a
GPU worker's ComfyUI lives in a group of its own), so nothing is left orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger("comfy_temporal.dev")


def descendants(pid: int) -> set[int]:
    """Every process below `pid` in the process tree, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields resume after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class ChildProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        output = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT if output is not None else None,
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()
        log.debug("started %s (pid %s): %s", self.name, self.process.pid, " ".join(self.argv))

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    def last_log_lines(self, count: int = 20) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        return lines[-count:]

    async def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> int | None:
        """Signal the group, wait `grace` s, then SIGKILL the group and its former descendants."""
        if self.process is None:
            return None
        pid = self.process.pid
        tree = descendants(pid)
        if self.process.returncode is None:
            _killpg(pid, sig)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=grace)
            except TimeoutError:
                log.warning(
                    "%s (pid %s) did not stop within %.0f s; killing it", self.name, pid, grace
                )
                _killpg(pid, signal.SIGKILL)
                await self.process.wait()
        # Descendants in other groups (a GPU worker's ComfyUI) get the rest of the grace to exit
        # after their parent stopped them, then are killed.
        left = {p for p in tree if alive(p)}
        if left:
            deadline = asyncio.get_running_loop().time() + min(grace, 5.0)
            while left and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
                left = {p for p in left if alive(p)}
            for p in left:
                log.warning("killing %s's leftover process %s", self.name, p)
                _killpg(p, signal.SIGKILL)
                _kill(p, signal.SIGKILL)
        return self.process.returncode
