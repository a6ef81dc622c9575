"""ComfyUIClient.run_prompt against the emulator as a real subprocess: results, cache, errors."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PIL import Image

from activities.comfyui.client import ComfyUIClient
from activities.comfyui.errors import (
    ComfyUIExecutionError,
    ComfyUIOutOfMemory,
    ComfyUIValidationError,
)
from activities.comfyui.events import (
    NodeExecuted,
    NodeExecuting,
    NodeProgress,
    NodesCached,
    PromptQueued,
    PromptStarted,
    PromptSucceeded,
)
from tests.support.graphs import sampler_graph, save_graph


async def test_run_prompt_saves_the_image_into_output_dir(shared_emulator, tmp_path: Path) -> None:
    graph = save_graph("run/basic", color=0x102030, width=40, height=30)
    async with ComfyUIClient(shared_emulator.url) as client:
        result = await client.run_prompt(graph, output_dir=tmp_path)
    assert len(result.outputs) == 1
    output = result.outputs[0]
    assert output.node_id == "3" and output.kind == "images" and output.type == "output"
    assert output.subfolder == "run" and output.content_type == "image/png"
    assert output.path == tmp_path / output.filename and output.path.stat().st_size == output.size
    with Image.open(output.path) as image:
        assert image.size == (40, 30)
        assert image.convert("RGB").getpixel((0, 0)) == (0xFF - 0x10, 0xFF - 0x20, 0xFF - 0x30)
    assert result.cached is False
    assert result.started_ms is not None and result.finished_ms is not None
    assert result.execution_seconds is not None and result.execution_seconds >= 0


async def test_run_prompt_reports_events_in_protocol_order(shared_emulator, tmp_path: Path) -> None:
    events: list = []
    async with ComfyUIClient(shared_emulator.url) as client:
        result = await client.run_prompt(save_graph(), output_dir=tmp_path, on_event=events.append)
    kinds = [type(event) for event in events]
    assert kinds[0] is PromptQueued and kinds[1] is PromptStarted and kinds[2] is NodesCached
    assert [e.node_id for e in events if isinstance(e, NodeExecuting)] == ["1", "2", "3"]
    assert [e.class_type for e in events if isinstance(e, NodeExecuting)] == [
        "EmptyImage",
        "ImageInvert",
        "SaveImage",
    ]
    executed = [e for e in events if isinstance(e, NodeExecuted)]
    assert executed[0].output["images"][0]["filename"] == result.outputs[0].comfy_filename
    assert kinds[-1] is PromptSucceeded
    assert all(e.prompt_id == result.prompt_id for e in events)


async def test_identical_rerun_is_cached_and_still_returns_the_files(
    shared_emulator, tmp_path: Path
) -> None:
    graph = save_graph("run/cached")
    async with ComfyUIClient(shared_emulator.url) as client:
        first = await client.run_prompt(graph, output_dir=tmp_path / "first")
        events: list = []
        second = await client.run_prompt(
            graph, output_dir=tmp_path / "second", on_event=events.append
        )
    assert first.cached is False and second.cached is True
    # ComfyUI replays the cached UI with the same filenames and writes no new file (§4.8).
    assert [o.comfy_filename for o in second.outputs] == [o.comfy_filename for o in first.outputs]
    assert second.outputs[0].path.read_bytes() == first.outputs[0].path.read_bytes()
    assert not [e for e in events if isinstance(e, NodeExecuting)]
    assert [e.nodes for e in events if isinstance(e, NodesCached)] == [["1", "2", "3"]]


async def test_progress_events_arrive_once_per_sampler_step(
    shared_emulator, tmp_path: Path
) -> None:
    events: list = []
    async with ComfyUIClient(shared_emulator.url) as client:
        await client.run_prompt(sampler_graph(5, 0.0), output_dir=tmp_path, on_event=events.append)
    progress = [(e.node_id, e.value, e.max) for e in events if isinstance(e, NodeProgress)]
    assert progress == [("2", float(step), 5.0) for step in range(1, 6)]


async def test_prompt_id_given_by_caller_is_used(shared_emulator, tmp_path: Path) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        result = await client.run_prompt(
            save_graph(), output_dir=tmp_path, prompt_id="our-own-id-1"
        )
        entry = await client.history("our-own-id-1")
    assert result.prompt_id == "our-own-id-1"
    assert entry is not None and entry["status"]["status_str"] == "success"


async def test_out_of_range_value_is_a_validation_error_naming_node_and_input(
    shared_emulator, tmp_path: Path
) -> None:
    graph = save_graph()
    graph["1"]["inputs"]["width"] = 0
    async with ComfyUIClient(shared_emulator.url) as client:
        with pytest.raises(ComfyUIValidationError) as caught:
            await client.run_prompt(graph, output_dir=tmp_path)
    error = caught.value
    assert error.error_type == "prompt_outputs_failed_validation"
    [node_error] = error.node_errors
    assert (node_error.node_id, node_error.class_type, node_error.input_name) == (
        "1",
        "EmptyImage",
        "width",
    )
    assert node_error.type == "value_smaller_than_min"
    assert node_error.message == "Value 0 smaller than min of 1"
    assert "node 1 (EmptyImage) input 'width'" in str(error)
    assert list(tmp_path.iterdir()) == []


async def test_value_above_max_and_missing_input_are_both_reported(
    shared_emulator, tmp_path: Path
) -> None:
    graph = save_graph()
    graph["1"]["inputs"]["height"] = 20000
    del graph["1"]["inputs"]["color"]
    async with ComfyUIClient(shared_emulator.url) as client:
        with pytest.raises(ComfyUIValidationError) as caught:
            await client.run_prompt(graph, output_dir=tmp_path)
    found = {(e.input_name, e.type) for e in caught.value.node_errors}
    assert found == {("height", "value_bigger_than_max"), ("color", "required_input_missing")}


async def test_unknown_class_type_is_a_validation_error_naming_the_node(
    shared_emulator, tmp_path: Path
) -> None:
    graph = save_graph()
    graph["2"]["class_type"] = "NoSuchNode"
    async with ComfyUIClient(shared_emulator.url) as client:
        with pytest.raises(ComfyUIValidationError) as caught:
            await client.run_prompt(graph, output_dir=tmp_path)
    assert caught.value.error_type == "invalid_prompt"
    assert caught.value.message == "Cannot execute because node NoSuchNode does not exist."
    assert [e.node_id for e in caught.value.node_errors] == ["2"]


async def test_node_errors_on_a_200_are_an_error_and_the_partial_prompt_is_removed(
    shared_emulator, tmp_path: Path
) -> None:
    # Two outputs, one invalid: ComfyUI answers 200 and queues only the valid one (§2.1).
    graph = save_graph("run/partial")
    graph["4"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "x"}}
    graph["5"] = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1}}
    async with ComfyUIClient(shared_emulator.url) as client:
        with pytest.raises(ComfyUIValidationError) as caught:
            await client.run_prompt(graph, output_dir=tmp_path, prompt_id="partial-200")
        queue = await client.queue()
    assert [(e.node_id, e.input_name, e.type) for e in caught.value.node_errors] == [
        ("5", "color", "required_input_missing")
    ]
    assert "partial-200" not in {
        item[1] for item in queue["queue_pending"] + queue["queue_running"]
    }


async def test_execution_error_carries_node_exception_type_and_message(
    shared_emulator, tmp_path: Path
) -> None:
    graph = save_graph("../../outside")  # SaveImage refuses to write outside its folder (§4.3)
    async with ComfyUIClient(shared_emulator.url) as client:
        with pytest.raises(ComfyUIExecutionError) as caught:
            await client.run_prompt(graph, output_dir=tmp_path)
    error = caught.value
    assert not isinstance(error, ComfyUIOutOfMemory)
    assert (error.node_id, error.class_type, error.exception_type) == (
        "3",
        "SaveImage",
        "Exception",
    )
    assert "Saving image outside the output folder is not allowed" in error.exception_message
    assert error.exception_message.endswith("\n")
    assert error.traceback


async def test_out_of_memory_is_recognised_by_exception_type(
    shared_emulator, tmp_path: Path
) -> None:
    await shared_emulator.set_faults(
        fail_on_node="EmulatorSampler",
        exception_type="torch.OutOfMemoryError",
        exception_message="CUDA out of memory. Tried to allocate 2.00 GiB",
    )
    try:
        async with ComfyUIClient(shared_emulator.url) as client:
            with pytest.raises(ComfyUIOutOfMemory) as caught:
                await client.run_prompt(sampler_graph(2, 0.0), output_dir=tmp_path)
    finally:
        await shared_emulator.set_faults()
    assert caught.value.node_id == "2" and caught.value.class_type == "EmulatorSampler"
    assert caught.value.exception_type == "torch.OutOfMemoryError"
    assert "ran out of memory on your GPU" in caught.value.exception_message


async def test_ready_is_false_when_nothing_listens(tmp_path: Path) -> None:
    from activities.comfyui.process import free_port

    async with ComfyUIClient(f"http://127.0.0.1:{free_port()}") as client:
        assert await client.ready() is False


async def test_ready_is_true_for_a_running_comfyui(shared_emulator) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        assert await client.ready() is True


async def test_history_of_unknown_prompt_is_none(shared_emulator) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        assert await client.history("never-submitted") is None
        assert await client.job("never-submitted") is None


async def test_view_route_exists_under_api_alias(shared_emulator, tmp_path: Path) -> None:
    async with ComfyUIClient(shared_emulator.url) as client:
        result = await client.run_prompt(save_graph("run/alias"), output_dir=tmp_path)
    out = result.outputs[0]
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(
            f"{shared_emulator.url}/api/view",
            params={"filename": out.comfy_filename, "subfolder": out.subfolder},
        )
    assert response.status_code == 200 and response.content == out.path.read_bytes()
