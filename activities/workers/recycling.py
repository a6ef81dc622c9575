"""When a GPU worker restarts its ComfyUI between jobs: ComfyUI's memory grows run after run (its
issues #11617, #5951, #14706), so a fresh process is started before it runs out.

Measured after every job: the resident memory of ComfyUI's whole process tree (from /proc), the
VRAM in use while ComfyUI is idle (`/system_stats`, comfyui-protocol.md §2.8), and the jobs run
since it started. The worker (gpu.py) then stops polling, lets the jobs it holds finish and
restarts ComfyUI.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from activities.comfyui.process import (
    RESTART_RECYCLED_JOBS,
    RESTART_RECYCLED_RSS,
    RESTART_RECYCLED_VRAM,
)

if TYPE_CHECKING:
    from activities.comfyui.client import ComfyUIClient

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_PROC = Path("/proc")


@dataclass(frozen=True)
class RecyclePolicy:
    """Limits past which ComfyUI is restarted between jobs; None turns a limit off."""

    rss_mb: float | None = None
    vram_mb: float | None = None
    after_jobs: int | None = None

    @property
    def enabled(self) -> bool:
        return any(limit is not None for limit in (self.rss_mb, self.vram_mb, self.after_jobs))


# The limit passed -> the restart's reason in comfy_comfyui_restarts_total.
_RESTART_REASONS = {
    "rss": RESTART_RECYCLED_RSS,
    "vram": RESTART_RECYCLED_VRAM,
    "jobs": RESTART_RECYCLED_JOBS,
}


@dataclass(frozen=True)
class RecycleReason:
    """Why ComfyUI is restarted: `kind` ("rss", "vram", "jobs") is the limit that was passed."""

    kind: str
    text: str

    @property
    def restart_reason(self) -> str:
        """The restart's reason as ComfyUIProcess reports it (for metrics)."""
        return _RESTART_REASONS[self.kind]


def process_tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every process below it (ComfyUI's custom nodes may start
    their own), read from /proc; 0 when the process is gone or /proc is not there."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        # The command name (field 2) may hold spaces and parentheses: fields resume after the
        # last ")"; the parent's pid is the second of them (proc(5)).
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            resident_pages = int((_PROC / str(current) / "statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident_pages * _PAGE_SIZE
        todo.extend(children.get(current, ()))
    return total


async def idle_vram_used(comfy: ComfyUIClient) -> int | None:
    """VRAM in use on ComfyUI's device (vram_total - vram_free of /system_stats, §2.8), read only
    while ComfyUI runs nothing and has nothing queued: during a run the number includes that
    run's working memory and says nothing about a leak. None while busy."""
    queue = await comfy.queue(timeout=5.0)
    if queue.get("queue_running") or queue.get("queue_pending"):
        return None
    stats = await comfy.system_stats()
    return sum(max(d["vram_total"] - d["vram_free"], 0) for d in stats.get("devices", []))


class RecycleCheck:
    """Counts the jobs of the current ComfyUI process and measures it against the policy."""

    def __init__(self, policy: RecyclePolicy) -> None:
        self.policy = policy
        self.jobs = 0

    def started(self) -> None:
        """A fresh ComfyUI: nothing run yet."""
        self.jobs = 0

    def job_ended(self) -> None:
        self.jobs += 1

    async def reason(self, pid: int | None, comfy: ComfyUIClient) -> RecycleReason | None:
        """Why ComfyUI should be restarted now, or None."""
        policy = self.policy
        if policy.after_jobs is not None and self.jobs >= policy.after_jobs:
            return RecycleReason("jobs", f"it ran {self.jobs} jobs (limit {policy.after_jobs})")
        if policy.rss_mb is not None and pid is not None:
            rss = await asyncio.to_thread(process_tree_rss, pid)
            if rss > policy.rss_mb * MIB:
                return RecycleReason(
                    "rss",
                    f"its resident memory is {rss / MIB:.0f} MiB (limit {policy.rss_mb:g} MiB)",
                )
        if policy.vram_mb is not None:
            try:
                vram = await idle_vram_used(comfy)
            except Exception as err:  # not answering: the supervisor's health checks see to it
                logger.debug("VRAM not measured: %s", err)
                vram = None
            if vram is not None and vram > policy.vram_mb * MIB:
                return RecycleReason(
                    "vram",
                    f"it holds {vram / MIB:.0f} MiB of VRAM while idle "
                    f"(limit {policy.vram_mb:g} MiB)",
                )
        return None
