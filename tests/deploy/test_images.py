"""The Dockerfiles and the build context, checked without a Docker engine: .dockerignore keeps out
what is large, local or secret but nothing an image copies; the images' ENV names only variables
the service reads; the GPU image installs the ComfyUI release its build argument names."""

from __future__ import annotations

import re

from tests.support.deploy import (
    DEPLOY_DIR,
    DOCKERFILES,
    REPO_ROOT,
    dockerfile_environments,
    unread_variables,
)

DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def _pattern(line: str) -> re.Pattern[str]:
    """A .dockerignore line as a regex over slash-separated paths (Go's filepath.Match plus **)."""
    out = ""
    i = 0
    while i < len(line):
        if line.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif line.startswith("**", i):
            out, i = out + ".*", i + 2
        elif line[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif line[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(line[i]), i + 1
    return re.compile(out)


def ignore_patterns() -> list[re.Pattern[str]]:
    lines = [
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Exceptions would need Docker's full rule order; this file has none.
    assert not any(line.startswith("!") for line in lines)
    return [_pattern(line) for line in lines]


def excluded(path: str) -> bool:
    """Whether `path` (relative to the repository) stays out of the build context: it, or a
    folder above it, matches a pattern."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(prefix) for p in ignore_patterns() for prefix in prefixes)


def test_build_context_leaves_out_the_venv_data_secrets_and_caches() -> None:
    for path in (
        ".venv/lib/python3.11/site-packages/fastapi/__init__.py",
        "data/outputs/smoke_image-20260101-000000-abcdef/out.png",
        "data/url-signing.key",
        "elsewhere/url-signing.key",
        "deploy/.env",
        ".git/HEAD",
        "api/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/api/app.data.json",
        ".ruff_cache/content",
        ".hypothesis/examples/x",
        "tests/api/test_health.py",
    ):
        assert excluded(path), path


def test_build_context_keeps_everything_the_images_copy() -> None:
    copied = set()
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                *sources, _dest = line.split()[1:]
                copied.update(sources)
    assert {"pyproject.toml", "README.md", "api", "activities", "manifests"} <= copied
    for source in copied:
        assert (REPO_ROOT / source).exists(), source
        assert not excluded(source), source


def test_images_set_only_variables_the_service_reads() -> None:
    environments = list(dockerfile_environments())
    assert all(env.names for env in environments)
    assert unread_variables(environments) == {}


def test_gpu_image_installs_the_comfyui_release_of_its_build_argument() -> None:
    text = (DEPLOY_DIR / "Dockerfile.gpu").read_text()
    assert re.search(r"^ARG COMFYUI_VERSION=v\d+\.\d+\.\d+$", text, re.M)
    assert '--branch "${COMFYUI_VERSION}"' in text
    # ComfyUI and torch live in ComfyUI's own venv, where the GPU worker looks for it.
    assert "python -m venv /opt/ComfyUI/venv" in text
    assert (
        "/opt/ComfyUI/venv/bin/pip install --no-cache-dir -r /opt/ComfyUI/requirements.txt" in text
    )
    assert "COMFYUI_PATH=/opt/ComfyUI" in text
