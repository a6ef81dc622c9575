"""/docs (Swagger UI) and /redoc served with their scripts and styles from this service.

FastAPI's own pages load them from a CDN, so on a machine without internet /docs is a blank page.
The assets come from the fastapi-offline package, which ships both Swagger UI and ReDoc builds.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png
_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
TITLE = "comfy-temporal API"


def install_docs(app: FastAPI, openapi_url: str) -> None:
    """Adds /docs, /redoc and the assets they load; all open, like /openapi.json."""
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=TITLE,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=TITLE,
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            # The fonts are one more outside request; ReDoc falls back to the system fonts.
            with_google_fonts=False,
        )
