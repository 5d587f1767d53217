"""``POST /storage/upload``: keep an image in Darkroom's storage and get a URL to pass as ``image_url``.

The body is a multipart form with the image in a field named ``file``, or the raw image with any
content type. It is read as a stream and abandoned as soon as it passes ``max_input_bytes``; the
format is sniffed from the bytes (the declared type and the file name are never trusted) and the
image screened like a data URI (caps, bombs, truncation) before anything is stored. The object is
``uploads/<uuid>.<ext>`` and its URL ``<api>/files/uploads/<uuid>.<ext>``: the API serves it (local
disk, or a redirect to a presigned S3 URL) and workers read it straight from storage, so it works
with both backends and never goes through the outbound address rules.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from darkroom.acceptance import CONTENT_TYPES, EXTENSIONS, ImageLimits, screen
from darkroom.errors import ImageTooLarge, InvalidInput
from darkroom.refs import FILES_ROUTE, UPLOADS_PREFIX

from ..auth import CallerDep
from ..deps import Services, services
from ..openapi import error_responses

log = logging.getLogger(__name__)

MULTIPART_SLACK = 64 * 1024  # room for the form's headers and boundaries around a file at the cap
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

router = APIRouter(tags=["storage"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class UploadResult(BaseModel):
    url: str
    content_type: str
    file_name: str
    file_size: int
    width: int
    height: int


@router.post(
    "/storage/upload",
    response_model=UploadResult,
    summary="Upload an image; its URL can be used as image_url",
    openapi_extra=UPLOAD_BODY,
    responses=error_responses(401, 429),
)
async def upload(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    caller: CallerDep,
    file_name: Annotated[str | None, Query(max_length=255, description="Name for a raw-body upload")] = None,
) -> UploadResult:
    settings = svc.settings
    body = await read_body(request, settings.max_input_bytes + MULTIPART_SLACK)
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        data, file_name = await _multipart_file(request, body)
    else:
        data = body
    info = await run_in_threadpool(screen, data, ImageLimits.from_settings(settings), "file")
    key = f"{UPLOADS_PREFIX}{uuid.uuid4()}.{EXTENSIONS[info.format]}"
    content_type = CONTENT_TYPES[info.format]
    await run_in_threadpool(svc.objects.put, key, data, content_type)
    log.info("stored upload %s (%d bytes, %dx%d) for %s", key, len(data), info.width, info.height,
             caller.owner or "anonymous")
    return UploadResult(
        url=f"{settings.api_base_url}{FILES_ROUTE}{key}",
        content_type=content_type,
        file_name=_file_name(file_name, EXTENSIONS[info.format]),
        file_size=len(data),
        width=info.width,
        height=info.height,
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, streamed; ImageTooLarge (422) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    too_large = ImageTooLarge(f"the upload is larger than the {limit - MULTIPART_SLACK}-byte limit")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _multipart_file(request: Request, body: bytes) -> tuple[bytes, str | None]:
    """The ``file`` field of a multipart body already read (replayed to Starlette's form parser)."""

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=20)
    try:
        item = form.get("file")
        if not isinstance(item, UploadFile):
            raise InvalidInput("a multipart upload needs the image in a file field named 'file'")
        return await item.read(), item.filename
    finally:
        await form.close()


def _file_name(given: str | None, extension: str) -> str:
    """The client's name (path dropped, odd characters replaced) with the sniffed extension."""
    base = (given or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = _NAME_CHARS.sub("_", base.rsplit(".", 1)[0] if "." in base else base).strip("._")[:100]
    return f"{stem or 'upload'}.{extension}"
