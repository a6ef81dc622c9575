"""ComfyUI (here the emulator) lists the files of its model folders, an extra model path included,
every time it is asked: a model downloaded while it runs is offered and accepted without a
restart (folder_paths.py refreshes its listing when a folder's mtime changes)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.emulator import StartEmulator


async def _checkpoints(url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=url) as http:
        info = (await http.get("/object_info/CheckpointLoaderSimple")).json()
        listed = (await http.get("/models/checkpoints")).json()
    options = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert options == listed
    return list(options)


async def test_a_file_added_to_an_extra_model_path_is_listed_at_once(
    start_emulator: StartEmulator, tmp_path: Path
):
    models_dir = tmp_path / "models"
    emulator = await start_emulator(models_dir=models_dir)
    assert await _checkpoints(emulator.url) == []
    folder = models_dir / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "a.safetensors").write_bytes(b"a")
    (folder / "notes.txt").write_text("not a model")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.ckpt").write_bytes(b"b")
    assert await _checkpoints(emulator.url) == ["a.safetensors", "sub/b.ckpt"]


async def test_an_unknown_model_folder_is_a_404(start_emulator: StartEmulator, tmp_path: Path):
    emulator = await start_emulator(models_dir=tmp_path / "models")
    async with httpx.AsyncClient(base_url=emulator.url) as http:
        assert (await http.get("/models/nonsense")).status_code == 404
        assert "checkpoints" in (await http.get("/models")).json()
