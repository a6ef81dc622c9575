"""`comfy-temporal manifests check` and `comfy-temporal render`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli.main import main
from manifests.cli import parse_param
from tests.support.manifests import ManifestDirs, fixture_dirs

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).parent / "comfy-temporal"


def dir_args(dirs: ManifestDirs) -> list[str]:
    return ["--manifests", str(dirs[0]), "--workflows", str(dirs[1])]


def test_check_passes_on_the_shipped_manifests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifests", "check"]) == 0
    out = capsys.readouterr().out
    assert "3 workflow(s)" in out and "flux_wavespeed" in out


def test_check_lists_every_error_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifests", "check", *dir_args(fixture_dirs("typos"))]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert any("key 'width.deafult'" in line for line in lines)
    assert any("workflow 'misspelt_entry': key 'timeuot'" in line for line in lines)


def test_render_prints_the_graph_and_resolved_params(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["render", "smoke_image", "-p", "width=32", "-p", "invert=false", "-p", "color=255"]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"prompt", "params"}
    assert document["params"]["width"] == 32 and document["params"]["invert"] is False
    assert document["prompt"]["1"]["inputs"] == {
        "width": 32,
        "height": 64,
        "batch_size": 1,
        "color": 255,
    }
    assert "2" not in document["prompt"]


def test_render_reports_every_invalid_param_on_stderr_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["render", "smoke_image", "-p", "width=8.5", "-p", "invert=no", "-p", "colour=1"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "width: expected an integer" in captured.err
    assert "invert: expected true or false" in captured.err
    assert "colour: unknown parameter" in captured.err


def test_render_of_an_unknown_workflow_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "nope"]) == 2
    assert "unknown workflow 'nope'" in capsys.readouterr().err


def test_render_uses_the_given_directories(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "render",
        "primitives",
        "-p",
        "prompt=a cat",
        *dir_args(fixture_dirs("original_convention")),
    ]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["prompt"]["10"]["inputs"]["value"] == "a cat"


def test_param_without_equals_sign_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["render", "smoke_image", "-p", "width"])
    assert caught.value.code == 2
    assert "expected name=value" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps=20", ("steps", 20)),
        ("cfg=7.5", ("cfg", 7.5)),
        ("FBC_optimize=false", ("FBC_optimize", False)),
        ("prompt=a cat", ("prompt", "a cat")),
        ('steps="20"', ("steps", "20")),
        ("seed=random", ("seed", "random")),
        ("prompt=a=b", ("prompt", "a=b")),
        ("prompt=", ("prompt", "")),
    ],
)
def test_param_values_are_json_when_they_parse_else_strings(
    text: str, expected: tuple[str, object]
) -> None:
    assert parse_param(text) == expected


def test_console_script_check_honours_the_environment_variables() -> None:
    manifests_dir, workflows_dir = fixture_dirs("ui_export")
    env = {**os.environ, "MANIFESTS_DIR": str(manifests_dir), "WORKFLOWS_DIR": str(workflows_dir)}
    completed = subprocess.run(
        [str(CONSOLE_SCRIPT), "manifests", "check"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert "Export (API)" in completed.stdout
    assert "Traceback" not in completed.stderr


def test_console_script_loads_the_original_format_and_renders_the_lora_prompt() -> None:
    original = dir_args(fixture_dirs("original_format"))
    env = {k: v for k, v in os.environ.items() if k != "COMFY_EXPERIMENTAL_WORKFLOWS"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CONSOLE_SCRIPT), *argv],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    check = run("manifests", "check", *original)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "3 workflow(s)" in check.stdout
    assert "exp_sketch_wide (experimental)" in check.stdout
    assert "5 LoRA(s) described" in check.stdout
    rendered = run(
        "render",
        "sketch_default",
        "-p",
        "prompt=a lighthouse at dusk",
        "-p",
        "lora=Pastel-Dream.safetensors",
        *original,
    )
    assert rendered.returncode == 0, rendered.stderr
    document = json.loads(rendered.stdout)
    expected = "pastel dream, a lighthouse at dusk, soft morning light"
    assert document["params"]["prompt"] == expected
    assert document["prompt"]["43"]["inputs"]["value"] == expected
