"""The loader inputs a GPU worker reports, read from the emulator's /object_info, whose loaders
list their model folders as ComfyUI 0.8.0 does (checked against the recorded validation error)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from activities.comfyui.client import ComfyUIClient
from activities.workers.inventory import loader_choices
from tests.support.emulator import StartEmulator
from tests.support.graphs import node, save_image
from tests.support.inventory import comfyui_base

TRACES = Path(__file__).resolve().parent.parent / "comfyui" / "traces"


async def test_every_model_loader_input_is_reported_and_nothing_else(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    base = comfyui_base(
        tmp_path,
        {
            "checkpoints": ["b.safetensors", "a/nested.ckpt", "notes.txt"],
            "loras": ["l.safetensors"],
            "unet": ["legacy-folder.safetensors"],
            "upscale_models": ["4x.pth"],
        },
    )
    emulator = await start_emulator(extra_args=["--base-directory", str(base)])
    async with ComfyUIClient(emulator.url) as comfy:
        loaders = loader_choices(await comfy.object_info())
    assert loaders == {
        "CheckpointLoaderSimple": {"ckpt_name": ["a/nested.ckpt", "b.safetensors"]},
        "LoraLoader": {"lora_name": ["l.safetensors"]},
        "LoraLoaderModelOnly": {"lora_name": ["l.safetensors"]},
        "VAELoader": {"vae_name": []},
        "UNETLoader": {"unet_name": ["legacy-folder.safetensors"]},
        "ControlNetLoader": {"control_net_name": []},
        # A V3 node's ["COMBO", {"options": [...]}] (comfyui-protocol.md §2.8).
        "UpscaleModelLoader": {"model_name": ["4x.pth"]},
    }


async def test_an_unknown_checkpoint_fails_validation_as_recorded(
    start_emulator: StartEmulator, tmp_path: Path
) -> None:
    recorded = json.loads((TRACES / "validation-errors.json").read_text())["bad_ckpt_name"]
    base = comfyui_base(tmp_path, {"checkpoints": ["random-sd15.safetensors"]})
    emulator = await start_emulator(extra_args=["--base-directory", str(base)])
    sampler = node("EmulatorSampler", "Sampler", images=["1", 0], steps=1, seconds_per_step=0.0)
    sampler["inputs"]["model"] = ["4", 0]
    graph = {
        "1": node("EmptyImage", "Empty", width=8, height=8, batch_size=1, color=0),
        "4": node("CheckpointLoaderSimple", "Checkpoint", ckpt_name="does-not-exist.safetensors"),
        "3": sampler,
        "9": save_image("3", "x"),
    }
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(f"{emulator.url}/prompt", json={"prompt": graph})
    assert (response.status_code, response.json()) == (recorded["status"], recorded["body"])
