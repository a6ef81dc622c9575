"""/docs and /redoc render in a real headless browser that cannot reach any host but the API.

Chromium resolves every other host name to "not found", as on a machine without internet, and
`--dump-dom` prints the page once its scripts have run, so an empty Swagger UI or ReDoc shows.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

from api.app import create_app
from api.cli.devstack.http_server import serve_in_background
from api.settings import Settings

# Debian's package; `make test` installs it when missing.
CHROMIUM = "chromium"
# Virtual time: the browser fast-forwards its timers and returns as soon as the page is idle.
RENDER_BUDGET_MS = 20_000


@pytest_asyncio.fixture(scope="module")
async def keyed_api(
    temporal_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """An API with keys on: the docs stay open, as they do without keys."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("docs-api"), api_keys=("docs-key",))
    app = create_app(settings, temporal_client=temporal_client)
    async with serve_in_background(app) as url:
        yield url


async def render(url: str, profile: Path) -> str:
    """The DOM of `url` after its scripts ran, in a browser with no route off this machine."""
    chromium = shutil.which(CHROMIUM)
    assert chromium, f"{CHROMIUM} is not installed (apt-get install chromium; `make test` does)"
    # Async: the API answering the browser runs on this test's event loop.
    browser = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(browser.communicate(), timeout=120)
    assert browser.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def outside_fetches(dom: str) -> list[str]:
    """Scripts, styles, icons and images the page loads from another host (links don't count)."""
    return re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="((?:https?:)?//[^"]+)"', dom)


async def test_swagger_ui_renders_the_operations_and_workflow_schemas_offline(
    keyed_api: str, tmp_path: Path
) -> None:
    dom = await render(f"{keyed_api}/docs", tmp_path)
    assert outside_fetches(dom) == []
    assert 'class="swagger-ui"' in dom
    # One block per operation, rendered from /openapi.json by the served script.
    assert 'data-path="/generate"' in dom, dom[-2000:]
    assert 'data-path="/tasks/{task_id}"' in dom
    # The per-workflow body variants of POST /generate (api/openapi.py) are among the schemas.
    assert ">Generate with smoke_image<" in dom


async def test_redoc_renders_the_operations_and_workflow_schemas_offline(
    keyed_api: str, tmp_path: Path
) -> None:
    dom = await render(f"{keyed_api}/redoc", tmp_path)
    assert outside_fetches(dom) == []
    assert 'data-section-id="operation/generate_generate_post"' in dom, dom[-2000:]
    assert 'data-section-id="operation/get_task_tasks__task_id__get"' in dom
    # The request body's discriminator offers one variant per workflow.
    assert '<option value="smoke_image">' in dom
