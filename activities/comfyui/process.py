"""Supervisor of one ComfyUI subprocess (ComfyUIProcess), and the same surface for a ComfyUI
that is already running elsewhere (ComfyUIAttached).

ComfyUI runs with its own interpreter, in its own process group, on a free loopback port, with
its own output/input/temp/user directories; its log goes to ours with a prefix, and the last
lines are kept for crash reports. Facts cited from comfyui-protocol.md (§n).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx

from activities.comfyui.errors import ComfyUIStartError, ComfyUIUnavailable
from activities.io.ports import free_port

log = logging.getLogger(__name__)

LAST_LINES = 200

# Why ComfyUIProcess restarted ComfyUI (its `on_restart` argument): it exited by itself, it stopped
# answering health checks, or `restart()` was asked for (a stalled prompt ignored the interrupt).
RESTART_EXITED = "exited"
RESTART_UNRESPONSIVE = "unresponsive"
RESTART_REQUESTED = "requested"
RESTART_REASONS = (RESTART_EXITED, RESTART_UNRESPONSIVE, RESTART_REQUESTED)


def resolve_python(install_dir: Path, python: str | None) -> str:
    """The given interpreter (COMFYUI_PYTHON), else the install's venv, else python3 on PATH.
    ComfyUI's dependencies (torch included) never enter our environment."""
    if python:
        return python
    for candidate in (
        install_dir / "venv" / "bin" / "python",
        install_dir / ".venv" / "bin" / "python",
    ):
        if candidate.exists():
            return str(candidate)
    return shutil.which("python3") or "python3"


@contextlib.contextmanager
def _sigint_not_inherited_as_ignored() -> Iterator[None]:
    """A child inherits an *ignored* SIGINT (as in a worker started in the background by a
    non-interactive shell), and then ComfyUI would ignore our SIGINT too and never shut down
    cleanly. exec resets *handled* signals to their default, so while spawning, ignore SIGINT
    through a do-nothing handler instead of SIG_IGN."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    ):
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Health:
    """Healthy flag with events to wait for either state."""

    def __init__(self) -> None:
        self.healthy = False
        self.became_healthy = asyncio.Event()
        self.became_unhealthy = asyncio.Event()
        self.became_unhealthy.set()

    def set(self, healthy: bool) -> None:
        self.healthy = healthy
        if healthy:
            self.became_unhealthy.clear()
            self.became_healthy.set()
        else:
            self.became_healthy.clear()
            self.became_unhealthy.set()

    async def wait_healthy(self, timeout: float | None, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.became_healthy.wait()
        except TimeoutError:
            raise ComfyUIUnavailable(f"{what} not healthy within {timeout} s") from None


def _address_in_use(lines: list[str]) -> bool:
    return any("address already in use" in line.lower() for line in lines[-5:])


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await client.get(f"{url}/queue", timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


class ComfyUIProcess:
    """Supervises one ComfyUI subprocess started from an install directory."""

    def __init__(
        self,
        install_dir: Path,
        *,
        work_dir: Path,
        python: str | None = None,
        cuda_device: int | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        start_timeout: float = 180.0,
        name: str = "comfyui",
        restart_backoff: float = 1.0,
        max_restart_backoff: float = 30.0,
        stable_after: float = 60.0,
        health_interval: float | None = 10.0,
        health_failures: int = 3,
    ) -> None:
        self.install_dir = Path(install_dir).resolve()
        self.work_dir = Path(work_dir).resolve()
        self.python = resolve_python(self.install_dir, python)
        self.cuda_device = cuda_device
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self._own_port = port is None
        self.start_timeout = start_timeout
        self.name = name
        self.restart_backoff = restart_backoff
        self.max_restart_backoff = max_restart_backoff
        self.stable_after = stable_after
        # While supervised, GET /queue every health_interval s; this many misses in a row mean a
        # frozen ComfyUI (alive but not answering), which is killed and restarted.
        self.health_interval = health_interval
        self.health_failures = health_failures
        self.output_dir = self.work_dir / "output"
        self.input_dir = self.work_dir / "input"
        self.temp_dir = self.work_dir / "temp"  # ComfyUI appends /temp to --temp-directory (§1.3)
        self.user_dir = self.work_dir / "user"
        self.restarts = 0
        # Called with one of RESTART_REASONS when supervise() sees ComfyUI gone (for metrics).
        self.on_restart: Callable[[str], None] | None = None
        self._kill_reason: str | None = None
        self.last_exit_code: int | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self._health = _Health()
        self._proc: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._exited = asyncio.Event()
        self._stopping = False
        # Set once this run answered; an exit before that is reported by start() alone.
        self._was_ready = False

    # -------------------------------------------------------------- properties
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def healthy(self) -> bool:
        return self._health.healthy

    @property
    def last_lines(self) -> list[str]:
        return list(self._lines)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def command(self) -> list[str]:
        args = [
            self.python,
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--output-directory",
            str(self.output_dir),
            "--input-directory",
            str(self.input_dir),
            "--temp-directory",
            str(self.work_dir),
            "--user-directory",
            str(self.user_dir),
            "--disable-auto-launch",
        ]
        if self.cuda_device is not None:
            # Pins the process to one GPU; inside it the device is cuda:0 (§1.2).
            args += ["--cuda-device", str(self.cuda_device)]
        return args + self.extra_args

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Spawn ComfyUI and wait until GET /queue answers (not /object_info, which scans every
        node, §1.5). Raises ComfyUIStartError with the last log lines."""
        if self.running:
            return
        try:
            await self._start()
        except ComfyUIStartError as err:
            # Another process may take the free port between our probe and ComfyUI's bind: that
            # says nothing about this ComfyUI, so it gets another port once.
            if not (self._own_port and _address_in_use(err.last_lines)):
                raise
            self.port = free_port()
            log.warning(
                "[%s] its port was taken meanwhile; starting again on %s", self.name, self.port
            )
            await self._start()

    async def _start(self) -> None:
        for directory in (self.output_dir, self.input_dir, self.user_dir):
            # --user-directory must exist, and a custom input dir is not created (§1.3).
            directory.mkdir(parents=True, exist_ok=True)
        self._stopping = False
        self._was_ready = False
        self._exited.clear()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        command = self.command()
        log.info("[%s] starting: %s", self.name, " ".join(command))
        try:
            with _sigint_not_inherited_as_ignored():
                self._proc = await asyncio.create_subprocess_exec(
                    *command,
                    cwd=str(self.install_dir),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    start_new_session=True,  # own process group: stop() reaches every child
                )
        except OSError as exc:
            raise ComfyUIStartError(f"[{self.name}] cannot run {self.python}: {exc}") from exc
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None
        loop = asyncio.get_running_loop()
        self._pumps = [
            loop.create_task(self._pump(proc.stdout)),
            loop.create_task(self._pump(proc.stderr)),
        ]
        self._watcher = loop.create_task(self._watch(proc))
        deadline = time.monotonic() + self.start_timeout
        delay = 0.02
        async with httpx.AsyncClient(trust_env=False) as client:
            while True:
                if proc.returncode is not None or self._exited.is_set():
                    await self._drain_pumps()
                    raise ComfyUIStartError(
                        f"[{self.name}] exited with code {proc.returncode} before it was ready",
                        self.last_lines,
                    )
                if await _answers(client, self.url):
                    break
                if time.monotonic() >= deadline:
                    await self.stop(grace=2.0)
                    raise ComfyUIStartError(
                        f"[{self.name}] not ready within {self.start_timeout} s", self.last_lines
                    )
                await asyncio.sleep(delay)  # readiness poll interval
                delay = min(delay * 2, 0.25)
        log.info("[%s] ready at %s (pid %s)", self.name, self.url, proc.pid)
        self._was_ready = True
        self._health.set(True)

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        prefix = f"[{self.name}]"
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the stream limit: take what is there
                raw = await stream.read(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._lines.append(line)
            log.info("%s %s", prefix, line)

    async def _drain_pumps(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self._pumps, return_exceptions=True), 2.0)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        await self._drain_pumps()
        self.last_exit_code = code
        self._health.set(False)
        self._exited.set()
        if not self._stopping and self._was_ready:
            tail = "\n".join(self.last_lines[-20:])
            log.error("[%s] exited with code %s; last lines:\n%s", self.name, code, tail)

    async def wait_healthy(self, timeout: float | None = None) -> None:
        await self._health.wait_healthy(timeout, f"[{self.name}]")

    async def wait_unhealthy(self) -> None:
        await self._health.became_unhealthy.wait()

    async def supervise(self) -> None:
        """Keep ComfyUI running: restart it with exponential backoff when it exits (reset after
        a stable run). Cancel this task to stop supervising; the process is then stopped."""
        backoff = self.restart_backoff
        try:
            while True:
                if not self.running:
                    try:
                        await self.start()
                    except ComfyUIStartError as exc:
                        log.error("%s", exc)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self.max_restart_backoff)
                        continue
                started_at = time.monotonic()
                watchdog = asyncio.get_running_loop().create_task(self._watchdog())
                try:
                    await self._exited.wait()
                finally:
                    watchdog.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watchdog
                if self._stopping:
                    return
                reason, self._kill_reason = self._kill_reason or RESTART_EXITED, None
                if self.on_restart is not None:
                    self.on_restart(reason)
                if time.monotonic() - started_at >= self.stable_after:
                    backoff = self.restart_backoff
                log.warning("[%s] restarting in %.1f s", self.name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_restart_backoff)
                self.restarts += 1
        except asyncio.CancelledError:
            await asyncio.shield(self.stop())
            raise

    async def _watchdog(self) -> None:
        if self.health_interval is None:
            return
        misses = 0
        async with httpx.AsyncClient(trust_env=False) as client:
            while self.running:
                await asyncio.sleep(self.health_interval)
                try:
                    response = await client.get(
                        f"{self.url}/queue", timeout=max(self.health_interval, 1.0)
                    )
                    answered = response.status_code == 200
                except httpx.HTTPError:
                    answered = False
                misses = 0 if answered else misses + 1
                if misses >= self.health_failures and self._proc is not None:
                    log.error(
                        "[%s] not answering for %d health checks; killing it to restart",
                        self.name,
                        misses,
                    )
                    self._health.set(False)
                    self._kill_reason = RESTART_UNRESPONSIVE
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self._proc.pid, signal.SIGKILL)
                    return

    async def restart(self, reason: str) -> None:
        """Kill ComfyUI's process group so that `supervise` starts a fresh one: the only way to
        free a GPU from a node that ignores interrupts."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        log.error("[%s] %s; killing it to restart", self.name, reason)
        self._health.set(False)
        self._kill_reason = RESTART_REQUESTED
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGINT to the whole process group (ComfyUI then cleans its temp dir, §1.5), SIGKILL
        after `grace` seconds."""
        self._stopping = True
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the child leads its own group
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning("[%s] did not stop within %.1f s; killing", self.name, grace)
        # Children may outlive the leader: the group goes either way.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        await proc.wait()
        await self._drain_pumps()
        self._health.set(False)


class ComfyUIAttached:
    """A ComfyUI already running at `url` (not ours to start or stop): health by polling
    GET /queue."""

    def __init__(
        self,
        url: str,
        *,
        start_timeout: float = 180.0,
        poll_interval: float = 2.0,
        name: str = "comfyui",
    ) -> None:
        self.url = url.rstrip("/")
        self.start_timeout = start_timeout
        self.poll_interval = poll_interval
        self.name = name
        self.last_lines: list[str] = []
        self._health = _Health()

    @property
    def healthy(self) -> bool:
        return self._health.healthy

    async def start(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        async with httpx.AsyncClient(trust_env=False) as client:
            while not await _answers(client, self.url):
                if time.monotonic() >= deadline:
                    raise ComfyUIStartError(
                        f"[{self.name}] {self.url} did not answer within {self.start_timeout} s"
                    )
                await asyncio.sleep(min(self.poll_interval, 0.5))
        self._health.set(True)

    async def wait_healthy(self, timeout: float | None = None) -> None:
        await self._health.wait_healthy(timeout, f"[{self.name}] {self.url}")

    async def wait_unhealthy(self) -> None:
        await self._health.became_unhealthy.wait()

    async def supervise(self) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            while True:
                healthy = await _answers(client, self.url)
                if healthy != self._health.healthy:
                    log.log(
                        logging.INFO if healthy else logging.ERROR,
                        "[%s] %s %s",
                        self.name,
                        self.url,
                        "answers again" if healthy else "stopped answering",
                    )
                self._health.set(healthy)
                await asyncio.sleep(self.poll_interval)

    async def restart(self, reason: str) -> None:
        """Not ours to restart: say so, and let whoever runs it act."""
        log.error("[%s] %s; it is not ours to restart", self.name, reason)

    async def stop(self, grace: float = 10.0) -> None:
        self._health.set(False)
