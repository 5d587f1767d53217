"""Health, readiness and the local-disk object route."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from darkroom.errors import DarkroomError, NotFound
from darkroom.refs import UPLOADS_PREFIX
from storage.objects import LocalObjectStore

from ..deps import Services, services

router = APIRouter(tags=["system"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
def ready(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """Readiness: Redis and object storage answer."""
    checks: dict[str, str] = {}
    try:
        svc.store.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any client error means not ready
        checks["redis"] = f"error: {exc}"
    try:
        svc.objects.check()
        checks["storage"] = "ok"
    except DarkroomError as exc:
        checks["storage"] = f"error: {exc.detail}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", **checks}, status_code=200 if ok else 503)


@router.get("/files/{key:path}", include_in_schema=False)
def local_file(key: str, svc: Annotated[Services, Depends(services)]) -> Response:
    """Objects of the local-disk backend (the embedded default); with S3, uploads only, redirected to a
    presigned URL (their stable URL lives here, so it stays valid and the worker reads it directly)."""
    store = svc.objects
    if not isinstance(store, LocalObjectStore):
        if not key.startswith(UPLOADS_PREFIX) or ".." in key.split("/"):
            raise NotFound("no such file")
        return RedirectResponse(store.url(key), status_code=307)
    try:
        path = store.path(key)
    except ValueError as exc:
        raise NotFound("no such file") from exc
    if not path.is_file():
        raise NotFound("no such file")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media)
