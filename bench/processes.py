"""CPU pinning (`taskset`) and CPU accounting (`/proc`) of the processes a benchmark starts.

Pinning happens at exec time (`taskset -c CPUS command...`), so every thread and child a process
creates later stays on its CPUs; CPU time is utime + stime of a process and every descendant alive,
plus cutime + cstime for the children it already waited for.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activities.comfyui.process import ComfyUIProcess
from api.cli.devstack.child_process import descendants

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuPinning:
    """Which CPUs the service (dev server, API + control worker, GPU worker) and ComfyUI get.

    The benchmark's own process (the clients) runs on ComfyUI's CPUs: it stands for the users,
    and in the direct runs it is the ComfyUI client, as the GPU worker is in the service runs."""

    service: str  # a taskset CPU list, e.g. "0"
    comfyui: str

    @staticmethod
    def cpu_set(cpus: str) -> set[int]:
        found: set[int] = set()
        for part in cpus.split(","):
            first, _, last = part.partition("-")
            found.update(range(int(first), int(last or first) + 1))
        return found

    def check(self) -> None:
        if shutil.which("taskset") is None:
            raise RuntimeError("taskset (util-linux) is not installed; run with --no-pin")
        usable = os.sched_getaffinity(0)
        for cpus in (self.service, self.comfyui):
            if not self.cpu_set(cpus) <= usable:
                raise RuntimeError(f"CPUs {cpus} are not all usable here (usable: {usable})")
        if self.cpu_set(self.service) & self.cpu_set(self.comfyui):
            raise RuntimeError("the service's and ComfyUI's CPUs overlap")

    def prefix(self, cpus: str) -> list[str]:
        return ["taskset", "-c", cpus]

    def pin_self_to_comfyui(self) -> None:
        # Only this thread; call it before any thread starts (the Temporal client's runtime),
        # so every later thread inherits it.
        os.sched_setaffinity(0, self.cpu_set(self.comfyui))


def command_prefix(pinning: CpuPinning | None, cpus_of: str) -> list[str]:
    """`taskset -c CPUS` for the service's ("service") or ComfyUI's ("comfyui") CPUs, or nothing."""
    if pinning is None:
        return []
    return pinning.prefix(pinning.service if cpus_of == "service" else pinning.comfyui)


class PinnedComfyUIProcess(ComfyUIProcess):
    """The emulator (or a local ComfyUI) started under `taskset`."""

    def __init__(self, install_dir: Path, *, prefix: list[str], **kwargs: Any) -> None:
        super().__init__(install_dir, **kwargs)
        self.prefix = prefix

    def command(self) -> list[str]:
        return [*self.prefix, *super().command()]


def _own_cpu_ticks(pid: int, *, with_waited_children: bool) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return 0  # exited between listing and reading
    # Fields after the command name (which may hold spaces): state is field 3, utime field 14.
    fields = stat[stat.rfind(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return utime + stime + ((cutime + cstime) if with_waited_children else 0)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and its descendants (user + system)."""
    ticks = _own_cpu_ticks(pid, with_waited_children=True)
    for child in descendants(pid):
        ticks += _own_cpu_ticks(child, with_waited_children=True)
    return ticks / CLOCK_TICKS


class CpuMeter:
    """CPU seconds of named process trees between `start()` and `stop()`."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._before: dict[str, float] = {}

    def snapshot(self) -> dict[str, float]:
        return {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}

    def start(self) -> None:
        self._before = self.snapshot()

    def stop(self) -> dict[str, float]:
        after = self.snapshot()
        return {name: after[name] - self._before[name] for name in self.pids}
