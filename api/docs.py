"""The interactive API docs, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served with their
scripts and styles from this server, so they work offline.

FastAPI's own pages load Swagger UI, ReDoc, a favicon and Google fonts from CDNs, so a machine
without Internet access shows a blank page. The assets come from the ``fastapi-offline`` package (a
dependency of the server extra: Swagger UI 5, which renders OpenAPI 3.1, and ReDoc 2); only its
static folder is used, mounted at ``/docs/assets`` and named in FastAPI's own page templates.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
SWAGGER_JS = f"{ASSETS_URL}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{ASSETS_URL}/swagger-ui.css"
REDOC_JS = f"{ASSETS_URL}/redoc.standalone.js"
FAVICON = f"{ASSETS_URL}/favicon.png"


def assets_dir() -> Path:
    """The folder of Swagger UI's and ReDoc's files in the installed ``fastapi-offline``."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets; the app must be built with ``docs_url=None``
    and ``redoc_url=None`` (FastAPI's CDN pages)."""
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} - API docs", swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS, swagger_favicon_url=FAVICON,
        )

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{title} - ReDoc", redoc_js_url=REDOC_JS,
            redoc_favicon_url=FAVICON, with_google_fonts=False,
        )

    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
