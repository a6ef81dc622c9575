"""The commands' settings: one environment variable per fact, flags over it, the same flag
spellings in `dev` and `gpu-worker`, and a bad value named before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.workers.cli import comfyui_flags
from activities.workers.settings import (
    ControlWorkerSettings,
    GpuWorkerProcessSettings,
    settings_from_args,
)
from api.cli.main import build_parser
from api.settings import DevSettings, Settings

COMFYUI_VARIABLES = ("COMFYUI_PATH", "COMFYUI_URL", "COMFYUI_PYTHON", "COMFYUI_ARGS", "GPU")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*COMFYUI_VARIABLES, "COMFY_WORKER_NAME", "COMFY_POOL", "COMFY_DOWNLOAD_URL_TTL"):
        monkeypatch.delenv(name, raising=False)


def dev(*argv: str) -> DevSettings:
    return settings_from_args(DevSettings, build_parser().parse_args(["dev", *argv]))


def gpu_worker(*argv: str) -> GpuWorkerProcessSettings:
    args = build_parser().parse_args(["gpu-worker", *argv])
    return settings_from_args(GpuWorkerProcessSettings, args)


@pytest.mark.parametrize("spelling", ["--worker-name", "--name"])
def test_worker_name_has_the_same_flags_in_dev_and_gpu_worker(spelling: str) -> None:
    assert dev(spelling, "gpu-a").worker_name == "gpu-a"
    assert gpu_worker(spelling, "gpu-a").worker_name == "gpu-a"


def test_comfyui_args_are_shell_split_from_the_environment_and_flags_replace_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMFYUI_ARGS", "--cpu --preview-method 'latent2rgb'")
    for read in (dev, gpu_worker):
        assert read().comfyui_args == ("--cpu", "--preview-method", "latent2rgb")
        assert read("--comfyui-arg=--lowvram").comfyui_args == ("--lowvram",)


def test_dev_hands_its_gpu_worker_exactly_its_comfyui_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMFYUI_ARGS", "--cpu --cache-none")
    monkeypatch.setenv("COMFY_WORKER_NAME", "gpu-dev")
    ours = dev("--comfyui", str(tmp_path), "--comfyui-python", "/opt/py", "--gpu", "1")
    for name in COMFYUI_VARIABLES + ("COMFY_WORKER_NAME",):  # dev's child gets flags only
        monkeypatch.delenv(name, raising=False)
    theirs = gpu_worker(*comfyui_flags(ours))
    for field in ("comfyui_path", "comfyui_python", "comfyui_args", "gpu", "worker_name", "pool"):
        assert getattr(theirs, field) == getattr(ours, field), field


def test_the_download_url_lifetime_has_one_default_for_the_api_and_the_control_worker() -> None:
    assert Settings().download_url_ttl_seconds == ControlWorkerSettings().download_url_ttl_seconds


def test_a_bad_environment_value_ends_the_command_naming_the_variable_and_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COMFY_DOWNLOAD_URL_TTL", "a day")
    with pytest.raises(SystemExit) as exited:
        settings_from_args(ControlWorkerSettings, build_parser().parse_args(["control-worker"]))
    assert exited.value.code == 2
    assert "--download-url-ttl / env COMFY_DOWNLOAD_URL_TTL = 'a day'" in capsys.readouterr().err
