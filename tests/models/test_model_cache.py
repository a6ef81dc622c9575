"""The GPU worker's model cache: downloads kept under a size limit by deleting the least recently
used ones, never the operator's files nor a file a running job uses, and remembered across a
restart of the worker."""

from __future__ import annotations

from pathlib import Path

from activities.models.download import ModelCredentials
from activities.models.inventory import model_files
from activities.models.store import ModelStore
from manifests.model_inputs import ModelFromUrl
from temporal_workflows.payloads import ModelInputRef
from tests.support.model_files import ModelServer, model_bytes

SIZE = 1000


def _store(models_dir: Path, limit: int) -> ModelStore:
    return ModelStore(
        models_dir,
        cache_bytes=limit,
        max_model_bytes=10 * SIZE,
        allow_private=True,
        credentials=ModelCredentials({}),
    )


def _ref(models: ModelServer, name: str, seed: int) -> ModelInputRef:
    models.files[name] = model_bytes(SIZE, seed)
    source = ModelFromUrl(models.url(name))
    return ModelInputRef(
        param="checkpoint",
        folder="checkpoints",
        url=source.url,
        name=source.file_name(),
        targets=["1.ckpt_name"],
    )


async def _use(store: ModelStore, ref: ModelInputRef) -> Path:
    path = await store.acquire(ref)
    store.release(ref)
    return path


async def test_the_least_recently_used_download_goes_first(tmp_path: Path, models: ModelServer):
    store = _store(tmp_path, limit=2 * SIZE + SIZE // 2)
    a, b, c = (_ref(models, f"{n}.safetensors", i) for i, n in enumerate("abc"))
    path_a, path_b = await _use(store, a), await _use(store, b)
    await _use(store, a)  # a is now more recent than b
    path_c = await _use(store, c)
    assert path_a.is_file() and path_c.is_file()
    assert not path_b.exists()
    assert sorted(store.cache.entries) == sorted(f"checkpoints/{r.name}" for r in (a, c))


async def test_files_the_operator_put_there_are_never_evicted(tmp_path: Path, models: ModelServer):
    operator_file = tmp_path / "checkpoints" / "mine.safetensors"
    operator_file.parent.mkdir(parents=True)
    operator_file.write_bytes(model_bytes(5 * SIZE, 99))
    store = _store(tmp_path, limit=SIZE + SIZE // 2)
    a, b = _ref(models, "a.safetensors", 1), _ref(models, "b.safetensors", 2)
    path_a = await _use(store, a)
    await _use(store, b)
    assert operator_file.is_file()
    assert not path_a.exists()


async def test_a_file_in_use_is_kept_even_over_the_limit(tmp_path: Path, models: ModelServer):
    store = _store(tmp_path, limit=SIZE + SIZE // 2)
    a, b = _ref(models, "a.safetensors", 1), _ref(models, "b.safetensors", 2)
    path_a = await store.acquire(a)  # a job runs with it
    path_b = await _use(store, b)
    assert path_a.is_file() and not path_b.exists()  # b went when its job ended; a stays
    store.release(a)


async def test_the_cache_survives_a_restart(tmp_path: Path, models: ModelServer):
    a = _ref(models, "a.safetensors", 1)
    await _use(_store(tmp_path, limit=10 * SIZE), a)
    restarted = _store(tmp_path, limit=10 * SIZE)
    path = await _use(restarted, a)
    assert models.count("a.safetensors") == 1  # known from the index: not downloaded again
    assert restarted.cache.get(f"checkpoints/{a.name}") is not None
    assert path.read_bytes() == models.files["a.safetensors"]


async def test_a_restart_with_a_smaller_limit_shrinks_the_cache(
    tmp_path: Path, models: ModelServer
):
    store = _store(tmp_path, limit=10 * SIZE)
    refs = [_ref(models, f"{n}.safetensors", i) for i, n in enumerate("abc")]
    for ref in refs:
        await _use(store, ref)
    smaller = _store(tmp_path, limit=SIZE)
    assert list(smaller.cache.entries) == [f"checkpoints/{refs[2].name}"]


def test_tokens_go_over_https_to_their_own_host_only():
    credentials = ModelCredentials.parse("hf-secret", "models.example=abc, other.example=def")
    assert credentials.headers_for("https", "huggingface.co") == {
        "Authorization": "Bearer hf-secret"
    }
    assert credentials.headers_for("https", "Models.Example") == {"Authorization": "Bearer abc"}
    assert credentials.headers_for("http", "models.example") == {}
    assert credentials.headers_for("https", "cdn-lfs.huggingface.co") == {}


def test_the_inventory_lists_each_folder_as_comfyui_does(tmp_path: Path):
    install, downloads = tmp_path / "install", tmp_path / "downloads"
    for path in (
        install / "unet" / "flux.safetensors",
        install / "loras" / "style" / "ink.safetensors",
        install / "loras" / "notes.txt",
        downloads / "diffusion_models" / "wan.gguf.safetensors",
        downloads / ".comfy-temporal" / "partial" / "checkpoints" / "x.safetensors.part",
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    files = model_files([install, downloads])
    assert files["diffusion_models"] == ["flux.safetensors", "wan.gguf.safetensors"]
    assert files["loras"] == ["style/ink.safetensors"]
    assert files["checkpoints"] == []
