"""The original service's two client scripts, as rewritten in tests/compat/ (same requests, same
fields read), run unchanged but for the URL and the payload against `comfy-temporal dev` on the
ComfyUI emulator: ping, the LoRA list, a progress bar that moves, SUCCESS and a working download."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from tests.support.dev_command import REPO_ROOT, DevRun, kill_dev, start_dev, stop_dev
from tests.support.manifests import write_file, write_manifests_with_emulator_sampler
from tests.support.waiting import wait_for

HERE = Path(__file__).resolve().parent

# The original's catalogue format, with trigger words, in a manifests folder beside base.yaml.
LORAS_YAML = """
"Charcoal-Smudge.safetensors":
  prefix: "chrcl smudge"
  description: "Soft charcoal shading"
"Neon-Edges.safetensors":
  suffix: "neon rim light"
  description: "Glowing outlines"
"""

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class ClientRun:
    returncode: int
    output: str

    def percents(self, line: re.Pattern[str]) -> list[int]:
        """The percent of each redraw of the progress line, in order."""
        frames = ANSI.sub("", self.output).replace("\n", "\r").split("\r")
        return [int(m.group(1)) for frame in frames if (m := line.search(frame))]

    def download_url(self) -> str:
        match = re.search(r"^Download URL: (\S+)$", ANSI.sub("", self.output), re.MULTILINE)
        assert match, self.output
        return match.group(1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dev(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevRun]:
    base = tmp_path_factory.mktemp("compat")
    manifests_dir, workflows_dir = write_manifests_with_emulator_sampler(base)
    write_file(manifests_dir / "loras.yaml", LORAS_YAML)
    env = {"MANIFESTS_DIR": str(manifests_dir), "WORKFLOWS_DIR": str(workflows_dir)}
    run = await start_dev(base / "data", base / "dev.log", env=env)
    try:
        async with httpx.AsyncClient(base_url=run.api_url, timeout=10) as http:

            async def ready() -> bool:
                return (await http.get("/ready")).status_code == 200

            await wait_for(ready, "dev's GPU worker to poll", timeout=90, interval=0.2)
        yield run
        assert await stop_dev(run) == 0, run.output()
    finally:
        kill_dev(run)


async def run_client(script: str, api_url: str) -> ClientRun:
    env = dict(os.environ, API_URL=api_url, PYTHONPATH=str(REPO_ROOT))
    # rich draws its live progress bar only on a terminal; these make it draw into the pipe.
    env.update(TTY_COMPATIBLE="1", TTY_INTERACTIVE="1", COLUMNS="120")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / script), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(120):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return ClientRun(process.returncode, out.decode(errors="replace"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rich_run(dev: DevRun) -> ClientRun:
    return await run_client("rich_client.py", dev.api_url)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def minimal_run(dev: DevRun) -> ClientRun:
    return await run_client("minimal_client.py", dev.api_url)


def moved(percents: list[int]) -> bool:
    return any(later > earlier for earlier, later in zip(percents, percents[1:], strict=False))


async def assert_downloads_a_png(url: str, size: tuple[int, int]) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        download = await http.get(url)
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(download.content))
    assert image.format == "PNG" and image.size == size


async def test_minimal_client_sees_progress_move_then_success(minimal_run: ClientRun) -> None:
    assert minimal_run.returncode == 0, minimal_run.output
    assert "Server is online." in minimal_run.output
    percents = minimal_run.percents(re.compile(r"^Progress: \[[█-]{40}\] (\d+)%$"))
    assert moved(percents), minimal_run.output
    assert "Task finished in" in minimal_run.output
    await assert_downloads_a_png(minimal_run.download_url(), (32, 32))


async def test_minimal_clients_file_is_also_at_the_original_results_path(
    minimal_run: ClientRun,
) -> None:
    url = urlsplit(minimal_run.download_url())
    match = re.fullmatch(r"/tasks/([^/]+)/outputs/([^/]+)", url.path)
    assert match, url
    task_id, filename = match.groups()
    results = url._replace(path=f"/results/{task_id}/{filename}").geturl()
    await assert_downloads_a_png(results, (32, 32))


async def test_rich_client_sees_progress_move_then_success(rich_run: ClientRun) -> None:
    assert rich_run.returncode == 0, rich_run.output
    assert "OK Server is online." in rich_run.output
    percents = rich_run.percents(re.compile(r"^Generating .*?(\d+)%"))
    assert moved(percents), rich_run.output
    assert "[OK] Task finished in" in rich_run.output
    await assert_downloads_a_png(rich_run.download_url(), (48, 32))


async def test_rich_client_lists_the_loras_the_api_lists(rich_run: ClientRun, dev: DevRun) -> None:
    async with httpx.AsyncClient(base_url=dev.api_url, timeout=10) as http:
        answer = await http.get("/loras")
    if answer.status_code == 404:
        pytest.skip("this API has no GET /loras route yet")
    assert answer.status_code == 200, answer.text
    assert "Could not fetch LoRA list" not in rich_run.output, rich_run.output
    loras = answer.json()
    if not loras:
        assert "No LoRAs defined in the manifest on the server." in rich_run.output
    for lora in loras:
        assert lora["name"] in rich_run.output and lora["description"] in rich_run.output
