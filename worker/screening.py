"""Cheap checks that an input is a complete, acceptable image, for the API to answer a synchronous 422
before a job exists (decisions §7). Torch-free; the worker's own decode still checks everything.

:func:`screen` = :func:`worker.imaging.probe` (format sniffed from the bytes, byte/pixel/side caps on
the header, so bombs never decode) plus an integrity check that finds truncated files without
decoding them at full size:

* PNG: Pillow's ``verify()`` walks every chunk and checks its CRC (no pixels are inflated);
* JPEG: the whole entropy-coded stream is decoded at 1/8 scale (``draft``): truncation is found at
  about 1/64 of the memory and a fraction of the time of a full decode;
* WebP: nothing more; libwebp needs the whole file to open it, so the probe already refused a
  truncated one;
* GIF, TIFF, BMP: the first frame is decoded when it is at most ``FULL_CHECK_MAX_PIXELS``; larger
  ones are left to the worker (which probes before it decodes, so its memory stays bounded, and
  fails such a job with ``unsupported_image``).
"""

from __future__ import annotations

import io
import logging

from PIL import Image

from darkroom.errors import InvalidInput, UnsupportedImage
from worker.imaging import ImageInfo, ImageLimits, probe

log = logging.getLogger(__name__)

FULL_CHECK_MAX_PIXELS = 4_000_000
CONTENT_TYPES = {
    "png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "tiff": "image/tiff", "bmp": "image/bmp",
}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "tiff": "tiff", "bmp": "bmp"}


def screen(data: bytes, limits: ImageLimits, what: str = "") -> ImageInfo:
    """Probe and integrity-check ``data``; InvalidInput subclasses (with ``what:`` in front) when bad."""
    try:
        info = probe(data, limits)
        _check_complete(data, info)
    except InvalidInput as exc:
        if not what:
            raise
        raise type(exc)(f"{what}: {exc.detail}") from None
    return info


def _check_complete(data: bytes, info: ImageInfo) -> None:
    if info.format == "webp":
        return
    if info.format not in ("png", "jpeg") and info.width * info.height > FULL_CHECK_MAX_PIXELS:
        return
    try:
        with Image.open(io.BytesIO(data), formats=[info.format.upper()]) as im:
            if info.format == "png":
                im.verify()
            else:
                if info.format == "jpeg":
                    im.draft(im.mode, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
                im.seek(0)
                im.load()
    except MemoryError:
        raise
    except Exception as exc:  # hostile data: Pillow raises OSError, SyntaxError, ValueError, struct.error…
        raise UnsupportedImage(f"truncated or corrupt {info.format.upper()} image ({exc})") from None

