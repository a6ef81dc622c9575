"""ComfyUI error bodies and binary frames become typed values (pure decoding, no server)."""

from __future__ import annotations

import json
import struct

import pytest

from activities.comfyui.errors import (
    ComfyUIExecutionError,
    ComfyUIOutOfMemory,
    ComfyUIValidationError,
)
from activities.comfyui.events import decode_binary


@pytest.mark.parametrize(
    "exception_type", ["torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError"]
)
def test_both_torch_oom_type_names_are_out_of_memory(exception_type: str) -> None:
    # The name changed between torch versions (comfyui-protocol.md §4.3).
    error = ComfyUIExecutionError.from_message(
        {
            "node_id": "3",
            "node_type": "KSampler",
            "exception_type": exception_type,
            "exception_message": "CUDA out of memory.\n",
            "traceback": ["frame"],
        }
    )
    assert isinstance(error, ComfyUIOutOfMemory)
    assert (error.node_id, error.class_type) == ("3", "KSampler")


def test_other_exception_types_are_plain_execution_errors() -> None:
    error = ComfyUIExecutionError.from_message(
        {
            "node_id": 7,
            "node_type": "LoadImage",
            "exception_type": "PIL.UnidentifiedImageError",
            "exception_message": "cannot identify image file\n",
        }
    )
    assert type(error) is ComfyUIExecutionError
    assert error.node_id == "7"
    assert str(error) == (
        "node 7 (LoadImage) raised PIL.UnidentifiedImageError: cannot identify image file"
    )


def test_recorded_bad_combo_value_names_node_input_and_allowed_values() -> None:
    body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "4": {
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "ckpt_name: 'x.safetensors' not in ['a.safetensors']",
                        "extra_info": {
                            "input_name": "ckpt_name",
                            "received_value": "x.safetensors",
                        },
                    }
                ],
                "dependent_outputs": ["9"],
                "class_type": "CheckpointLoaderSimple",
            }
        },
    }
    error = ComfyUIValidationError.from_response(body)
    [node_error] = error.node_errors
    assert (node_error.node_id, node_error.class_type, node_error.input_name) == (
        "4",
        "CheckpointLoaderSimple",
        "ckpt_name",
    )
    assert str(error) == (
        "Prompt outputs failed validation (prompt_outputs_failed_validation); node 4"
        " (CheckpointLoaderSimple) input 'ckpt_name': Value not in list"
        " [ckpt_name: 'x.safetensors' not in ['a.safetensors']]"
    )


def test_invalid_prompt_details_name_the_node_even_without_node_errors() -> None:
    body = {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node Nope does not exist.",
            "details": "Node ID '#12'",
            "extra_info": {},
        },
        "node_errors": {},
    }
    error = ComfyUIValidationError.from_response(body, {"12": {"class_type": "Nope", "inputs": {}}})
    assert [(e.node_id, e.class_type) for e in error.node_errors] == [("12", "Nope")]


def test_type_1_preview_frame_decodes_format_and_image() -> None:
    frame = decode_binary(struct.pack(">II", 1, 2) + b"\x89PNGdata")
    assert frame is not None
    assert (frame.event_type, frame.image_type, frame.data) == (1, "image/png", b"\x89PNGdata")


def test_type_4_preview_frame_decodes_metadata() -> None:
    metadata = json.dumps({"node_id": "3", "prompt_id": "p", "image_type": "image/jpeg"}).encode()
    frame = decode_binary(struct.pack(">II", 4, len(metadata)) + metadata + b"\xff\xd8jpeg")
    assert frame is not None
    assert (frame.node_id, frame.image_type, frame.data) == ("3", "image/jpeg", b"\xff\xd8jpeg")
    assert frame.metadata is not None and frame.metadata["prompt_id"] == "p"


def test_type_3_text_frame_decodes_node_and_text() -> None:
    frame = decode_binary(struct.pack(">II", 3, 2) + b"12" + b"width: 16")
    assert frame is not None and (frame.node_id, frame.text) == ("12", "width: 16")


@pytest.mark.parametrize("raw", [b"", b"\x00\x00\x00\x01", struct.pack(">II", 9, 0)])
def test_short_or_unknown_frames_decode_to_none(raw: bytes) -> None:
    assert decode_binary(raw) is None
