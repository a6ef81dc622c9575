"""The shipped weightless workflow, rendered, runs on a ComfyUI-compatible server and produces
the image its parameters describe (the emulator speaks ComfyUI's HTTP protocol, §2.1 and §2.5)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from PIL import Image

from manifests.registry import ManifestRegistry
from tests.support.emulator import EmulatorHandle


async def run_on_comfyui(emulator: EmulatorHandle, graph: dict[str, Any]) -> list[dict[str, Any]]:
    """Submit `graph`, wait for its history entry, return the images of its outputs."""
    prompt_id = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=emulator.url, trust_env=False, timeout=10.0) as client:
        response = await client.post("/prompt", json={"prompt": graph, "prompt_id": prompt_id})
        assert response.status_code == 200, response.text
        assert response.json()["node_errors"] == {}
        deadline = time.monotonic() + 30.0
        while True:
            entry = (await client.get(f"/history/{prompt_id}")).json().get(prompt_id)
            if entry is not None and entry["status"]["completed"]:
                break
            assert entry is None or entry["status"]["status_str"] != "error", entry
            assert time.monotonic() < deadline, "the prompt did not finish within 30 s"
            await asyncio.sleep(0.05)
    return [image for output in entry["outputs"].values() for image in output.get("images", [])]


def open_image(emulator: EmulatorHandle, ref: dict[str, Any]) -> Image.Image:
    return Image.open(emulator.output_dir / ref["subfolder"] / ref["filename"]).convert("RGB")


async def test_rendered_smoke_image_saves_the_inverted_colour(
    shared_emulator: EmulatorHandle,
) -> None:
    params = {
        "width": 40,
        "height": 24,
        "color": 0x102030,
        "filename_prefix": f"inv{uuid.uuid4().hex[:8]}",
    }
    rendered = ManifestRegistry().render("smoke_image", params)
    (ref,) = await run_on_comfyui(shared_emulator, rendered.prompt)
    image = open_image(shared_emulator, ref)
    assert image.size == (40, 24)
    assert image.getpixel((0, 0)) == (0xFF - 0x10, 0xFF - 0x20, 0xFF - 0x30)


async def test_rendered_smoke_image_without_invert_saves_the_colour(
    shared_emulator: EmulatorHandle,
) -> None:
    params = {
        "width": 8,
        "height": 8,
        "color": 0x102030,
        "invert": False,
        "filename_prefix": f"raw{uuid.uuid4().hex[:8]}",
    }
    rendered = ManifestRegistry().render("smoke_image", params)
    (ref,) = await run_on_comfyui(shared_emulator, rendered.prompt)
    assert open_image(shared_emulator, ref).getpixel((0, 0)) == (0x10, 0x20, 0x30)
