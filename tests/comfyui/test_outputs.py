"""Output collection (every kind, temp rules, unique flat names), streamed downloads, uploads."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from pathlib import Path

from PIL import Image

from activities.comfyui.client import ComfyUIClient
from activities.comfyui.events import NodeExecuted
from tests.support.graphs import empty_image, fresh_color, invert_loaded_graph, node, save_image


def _source(node_id: str = "1", batch: int = 1) -> dict:
    return {node_id: empty_image(batch_size=batch)}


def _png(color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _mixed_graph() -> dict:
    graph = _source(batch=3)
    graph.update(
        {
            "2": save_image("1", "mixed/still"),
            "3": {
                "class_type": "SaveAnimatedWEBP",
                "inputs": {
                    "images": ["1", 0],
                    "filename_prefix": "mixed/anim",
                    "fps": 6.0,
                    "lossless": True,
                    "quality": 80,
                    "method": "fastest",
                },
            },
            "4": {
                "class_type": "EmulatorSaveAudio",
                "inputs": {"filename_prefix": "mixed/voice", "seconds": 0.05},
            },
            "5": {
                "class_type": "EmulatorSaveVideo",
                "inputs": {"images": ["1", 0], "filename_prefix": "mixed/clip", "size_bytes": 5000},
            },
            "6": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }
    )
    return graph


async def test_every_output_kind_is_collected_and_temp_previews_are_skipped(
    shared_emulator, tmp_path: Path
) -> None:
    events: list = []
    async with ComfyUIClient(shared_emulator.url) as client:
        result = await client.run_prompt(
            _mixed_graph(), output_dir=tmp_path, on_event=events.append
        )
    found = sorted((o.node_id, o.kind, o.content_type) for o in result.outputs)
    assert found == [
        ("2", "images", "image/png"),
        ("2", "images", "image/png"),
        ("2", "images", "image/png"),
        ("3", "images", "image/webp"),
        ("4", "audio", "audio/wav"),
        ("5", "gifs", "video/mp4"),
    ]
    assert all(o.type == "output" for o in result.outputs)
    for output in result.outputs:
        assert output.path.parent == tmp_path and output.path.stat().st_size == output.size > 0
    webp = next(o.path for o in result.outputs if o.node_id == "3").read_bytes()
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"
    executed = {e.node_id: e.output for e in events if isinstance(e, NodeExecuted)}
    assert executed["3"]["animated"] == [True]


async def test_include_temp_also_collects_preview_images(shared_emulator, tmp_path: Path) -> None:
    graph = _source()
    graph["2"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    async with ComfyUIClient(shared_emulator.url) as client:
        skipped = await client.run_prompt(graph, output_dir=tmp_path / "skipped")
        graph["1"]["inputs"]["color"] = fresh_color()
        included = await client.run_prompt(
            graph, output_dir=tmp_path / "included", include_temp=True
        )
    assert skipped.outputs == []
    assert [(o.node_id, o.type) for o in included.outputs] == [("2", "temp")]
    assert included.outputs[0].comfy_filename.startswith("ComfyUI_temp_")


async def test_output_nodes_limits_which_nodes_files_are_collected(
    shared_emulator, tmp_path: Path
) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        result = await client.run_prompt(_mixed_graph(), output_dir=tmp_path, output_nodes=["4"])
    assert [(o.node_id, o.kind) for o in result.outputs] == [("4", "audio")]
    assert [p.name for p in tmp_path.iterdir()] == [result.outputs[0].filename]


async def test_same_basename_from_two_nodes_gets_node_id_prefix(
    shared_emulator, tmp_path: Path
) -> None:
    graph = _source()
    graph["2"] = save_image("1", "left/same")
    graph["3"] = save_image("1", "right/same")
    async with ComfyUIClient(shared_emulator.url) as client:
        result = await client.run_prompt(graph, output_dir=tmp_path)
    names = {o.node_id: o.filename for o in result.outputs}
    assert {o.comfy_filename for o in result.outputs} == {"same_00001_.png"}
    # The first node keeps ComfyUI's name; the colliding one is prefixed with its node id.
    assert names == {"2": "same_00001_.png", "3": "3_same_00001_.png"}
    assert len({o.path for o in result.outputs}) == 2 and all(
        o.path.exists() for o in result.outputs
    )


async def test_large_output_is_streamed_to_disk_without_holding_it_in_memory(
    shared_emulator, tmp_path: Path
) -> None:
    size = 24 * 1024 * 1024
    graph = _source()
    graph["2"] = {
        "class_type": "EmulatorSaveVideo",
        "inputs": {"images": ["1", 0], "filename_prefix": "big/clip", "size_bytes": size},
    }
    async with ComfyUIClient(shared_emulator.url) as client:
        tracemalloc.start()
        try:
            result = await client.run_prompt(graph, output_dir=tmp_path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    [output] = result.outputs
    assert output.size == size == output.path.stat().st_size
    source = shared_emulator.output_dir / output.subfolder / output.comfy_filename
    assert (
        hashlib.sha256(output.path.read_bytes()).digest()
        == hashlib.sha256(source.read_bytes()).digest()
    )
    assert peak < size / 4, f"peak Python allocation {peak} bytes for a {size} byte download"


async def test_uploaded_image_feeds_load_image(shared_emulator, tmp_path: Path) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        uploaded = await client.upload_image(
            _png((10, 20, 30)), "upload-source.png", subfolder="uploads"
        )
        graph = invert_loaded_graph(f"uploads/{uploaded['name']}", "loaded/run")
        result = await client.run_prompt(graph, output_dir=tmp_path)
    assert uploaded == {"name": "upload-source.png", "subfolder": "uploads", "type": "input"}
    with Image.open(result.outputs[0].path) as image:
        assert image.size == (12, 10) and image.convert("RGB").getpixel((3, 3)) == (245, 235, 225)


async def test_upload_reuses_identical_bytes_and_renames_different_ones(shared_emulator) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        first = await client.upload_image(_png((1, 2, 3)), "dup.png")
        same = await client.upload_image(_png((1, 2, 3)), "dup.png")
        other = await client.upload_image(_png((9, 9, 9)), "dup.png")
        replaced = await client.upload_image(_png((7, 7, 7)), "dup.png", overwrite=True)
    assert (first["name"], same["name"], other["name"], replaced["name"]) == (
        "dup.png",
        "dup.png",
        "dup (1).png",
        "dup.png",
    )
    assert (shared_emulator.input_dir / "dup.png").read_bytes() == _png((7, 7, 7))


async def test_missing_image_file_is_a_validation_error_on_load_image(
    shared_emulator, tmp_path: Path
) -> None:
    from activities.comfyui.errors import ComfyUIValidationError

    graph = {
        "1": node("LoadImage", "Load Image", image="not-uploaded.png"),
        "2": save_image("1", "x"),
    }
    async with ComfyUIClient(shared_emulator.url) as client:
        try:
            await client.run_prompt(graph, output_dir=tmp_path)
        except ComfyUIValidationError as error:
            [node_error] = error.node_errors
        else:
            raise AssertionError("LoadImage of a missing file was accepted")
    assert (node_error.node_id, node_error.type) == ("1", "custom_validation_failed")
    assert node_error.details == "image - Invalid image file: not-uploaded.png"


async def test_free_system_stats_and_object_info(shared_emulator) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        await client.free(unload_models=True, free_memory=True)
        stats = await client.system_stats()
        sampler = await client.object_info("EmulatorSampler")
        unknown = await client.object_info("NoSuchNode")
    assert stats["system"]["comfyui_version"] == "0.8.0" and stats["devices"][0]["type"] == "cpu"
    assert list(sampler["EmulatorSampler"]["input"]["required"]) == [
        "images",
        "steps",
        "seconds_per_step",
    ]
    assert unknown == {}


async def test_free_memory_makes_the_next_identical_prompt_execute_again(
    shared_emulator, tmp_path: Path
) -> None:
    graph = _source()
    graph["2"] = save_image("1", "freed/run")
    async with ComfyUIClient(shared_emulator.url) as client:
        first = await client.run_prompt(graph, output_dir=tmp_path / "1")
        await client.free(free_memory=True)
        second = await client.run_prompt(graph, output_dir=tmp_path / "2")
    assert second.cached is False
    assert second.outputs[0].comfy_filename != first.outputs[0].comfy_filename
