"""An API over real HTTP serving `invert_image` (LoadImage -> ImageInvert -> SaveImage), optionally
with its embedded control worker and a real GPU worker driving the ComfyUI emulator."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from temporalio.client import Client

from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.settings import Settings
from manifests.registry import ManifestRegistry
from tests.api.stack import api_with_gpu_worker

WORKFLOW_ID = "invert_image"

GRAPH = {
    "1": {
        "class_type": "LoadImage",
        "inputs": {"image": "example.png"},
        "_meta": {"title": "Load Image"},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}, "_meta": {"title": "Invert"}},
    "3": {
        "class_type": "SaveImage",
        "inputs": {"images": ["2", 0], "filename_prefix": "inverted"},
        "_meta": {"title": "Save Image"},
    },
}

BASE_YAML = """
image:
  type: image
  required: true
  description: The image to invert.
  targets: [{node: Load Image, input: image}]
"""

WORKFLOWS_YAML = f"""
{WORKFLOW_ID}:
  workflow_file: {WORKFLOW_ID}.json
  description: Inverts the colours of the given image.
  parameters: [image]
  timeout: 60
  retries: 0
"""


def write_image_manifests(
    dest: Path, *, base_yaml: str = BASE_YAML, workflows_yaml: str = WORKFLOWS_YAML
) -> ManifestRegistry:
    manifests_dir = dest / "manifests"
    workflows_dir = dest / "workflows"
    manifests_dir.mkdir(parents=True, exist_ok=True)
    workflows_dir.mkdir(parents=True, exist_ok=True)
    (manifests_dir / "base.yaml").write_text(base_yaml)
    (manifests_dir / "workflows.yaml").write_text(workflows_yaml)
    (workflows_dir / f"{WORKFLOW_ID}.json").write_text(json.dumps(GRAPH))
    registry = ManifestRegistry(manifests_dir, workflows_dir)
    assert not registry.snapshot().errors, [str(e) for e in registry.snapshot().errors]
    return registry


def solid_png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(out, format="PNG")
    return out.getvalue()


def first_pixel(png: bytes) -> tuple[int, int, int]:
    with Image.open(io.BytesIO(png)) as image:
        pixel = image.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))


@dataclass
class ImageStack:
    url: str
    data_dir: Path


@contextlib.asynccontextmanager
async def image_api(
    client: Client, base_dir: Path, registry: ManifestRegistry | None = None, **settings: object
) -> AsyncIterator[ImageStack]:
    """The API alone (no workers): for what it refuses and stores at submission."""
    registry = registry or write_image_manifests(base_dir)
    data_dir = base_dir / "data"
    app = create_app(
        Settings(data_dir=data_dir, **settings),  # type: ignore[arg-type]
        temporal_client=client,
        registry=registry,
    )
    async with serve_in_background(app) as url:
        yield ImageStack(url=url, data_dir=data_dir)


@contextlib.asynccontextmanager
async def image_generation_stack(
    client: Client, base_dir: Path, **settings: object
) -> AsyncIterator[ImageStack]:
    """The API with its embedded control worker, a GPU worker and its ComfyUI emulator."""
    async with api_with_gpu_worker(
        client,
        base_dir,
        write_image_manifests(base_dir),
        worker_prefix="inputs-gpu",
        emulator_name="emulator:inputs",
        **settings,
    ) as running:
        yield ImageStack(url=running.url, data_dir=running.data_dir)
