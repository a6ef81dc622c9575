"""The emulator's model loads (--emulator-load-seconds-per-gb, --emulator-max-loaded-models): a
model file's first use is a load, a loaded file is reused, the least recently used is dropped
beyond the limit, and /free drops them all, as ComfyUI does (comfyui-protocol.md §4.12). The
recorded traces still replay with loads turned on (test_emulator_conformance.py)."""

from __future__ import annotations

from pathlib import Path

import httpx

from activities.comfyui.client import ComfyUIClient
from tests.support.graphs import checkpoint_graph
from tests.support.routing import CHECKPOINTS, emulator_load_args, emulator_models, models_base

A, B = CHECKPOINTS[0], CHECKPOINTS[1]


async def test_loads_follow_first_use_reuse_lru_and_free(start_emulator, tmp_path: Path) -> None:
    base = models_base(tmp_path / "base", size_bytes=10_000_000)
    emulator = await start_emulator(
        extra_args=["--cache-none", *emulator_load_args(base, seconds_per_gb=1.0, max_loaded=1)]
    )
    async with ComfyUIClient(emulator.url) as client:
        for n, model in enumerate([A, A, B, A]):
            await client.run_prompt(checkpoint_graph(model), output_dir=tmp_path / f"run-{n}")
        models = await emulator_models(emulator.url)
        assert models["loads"] == 3, models  # A, B (dropping A), A again
        assert models["loaded"] == [{"folder": "checkpoints", "name": A}], models
        async with httpx.AsyncClient(trust_env=False) as http:
            freed = await http.post(f"{emulator.url}/free", json={"unload_models": True})
            assert freed.status_code == 200
        assert (await emulator_models(emulator.url))["loaded"] == []
        await client.run_prompt(checkpoint_graph(A), output_dir=tmp_path / "after-free")
    assert (await emulator_models(emulator.url))["loads"] == 4
