"""The playground: a page at ``/`` (static files under ``/static``) that builds its forms from
``/openapi.json`` and drives the queue API from the browser. No build step, no external assets."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate, so an upgraded server serves the new page

router = APIRouter(include_in_schema=False)


class _StaticFiles(StaticFiles):
    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(NO_CACHE)
        return response


@router.get("/")
async def playground() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=NO_CACHE)


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files at ``/static`` (neither needs a key: the page asks for it)."""
    app.include_router(router)
    app.mount("/static", _StaticFiles(directory=STATIC_DIR), name="static")
