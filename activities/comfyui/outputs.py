"""A finished prompt's files: which UI output items are files (comfyui-protocol.md §2.5, §4.5),
the flat names they get in the caller's output_dir, and streaming them there concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from activities.comfyui.errors import ComfyUIError
from activities.comfyui.protocol import UIOutput
from activities.io.media_types import content_type_for


@dataclass
class OutputFile:
    """One output file of a prompt, downloaded into the caller's output_dir."""

    node_id: str
    filename: str  # name in output_dir
    path: Path
    size: int
    content_type: str
    comfy_filename: str
    subfolder: str
    type: str  # "output" | "temp"
    kind: str  # the UI key it came from: "images", "audio", "gifs", "video", ...


@dataclass
class PromptResult:
    prompt_id: str
    outputs: list[OutputFile]
    cached: bool
    started_ms: int | None  # ComfyUI's execution_start timestamp
    finished_ms: int | None  # ComfyUI's execution_success timestamp

    @property
    def execution_seconds(self) -> float | None:
        if self.started_ms is None or self.finished_ms is None:
            return None
        return (self.finished_ms - self.started_ms) / 1000.0


# (filename, subfolder, type, dest) -> bytes written: ComfyUIClient.download.
Download = Callable[[str, str, str, Path], Awaitable[int]]


async def collect_outputs(
    outputs: Mapping[str, UIOutput],
    output_dir: Path,
    download: Download,
    *,
    output_nodes: Sequence[str] | None = None,
    include_temp: bool = False,
) -> list[OutputFile]:
    """Every file item ({filename, subfolder, type}) of every UI key: images, gifs, video,
    audio, anything (§2.5). Temp files only when asked. On any failure no file is left behind."""
    output_dir.mkdir(parents=True, exist_ok=True)
    wanted = set(output_nodes) if output_nodes is not None else None
    planned: list[OutputFile] = []
    for node_id, ui in outputs.items():
        if wanted is not None and node_id not in wanted:
            continue
        for kind, items in (ui or {}).items():
            if not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
                    continue
                file_type = str(item.get("type") or "output")
                if file_type != "output" and not (include_temp and file_type == "temp"):
                    continue
                comfy_name = item["filename"]
                path = _claim_unique_path(output_dir, node_id, os.path.basename(comfy_name))
                planned.append(
                    OutputFile(
                        node_id=node_id,
                        filename=path.name,
                        path=path,
                        size=0,
                        content_type=content_type_for(comfy_name),
                        comfy_filename=comfy_name,
                        subfolder=str(item.get("subfolder") or ""),
                        type=file_type,
                        kind=kind,
                    )
                )

    async def fetch(output: OutputFile) -> None:
        output.size = await download(
            output.comfy_filename, output.subfolder, output.type, output.path
        )

    try:
        await asyncio.gather(*(fetch(output) for output in planned))
    except BaseException:
        for output in planned:
            with contextlib.suppress(OSError):
                output.path.unlink()
        raise
    return planned


def _claim_unique_path(output_dir: Path, node_id: str, basename: str) -> Path:
    """Create an empty file under a flat unique name: ComfyUI's basename, prefixed with the node
    id only on a collision. O_EXCL makes concurrent claims in one directory safe."""
    stem, ext = os.path.splitext(basename)
    names = itertools.chain(
        [basename, f"{node_id}_{basename}"],
        (f"{node_id}_{stem}_{n}{ext}" for n in itertools.count(2)),
    )
    for name in names:
        path = output_dir / name
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise ComfyUIError(f"output name too long: {name}") from exc
            raise
        os.close(fd)
        return path
    raise AssertionError("unreachable")
