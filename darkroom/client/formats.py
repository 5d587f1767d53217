"""Output image formats: a file's extension chooses its format.

The apps encode PNG, JPEG or WebP (their ``output_format`` field), so the client asks for the format
the output file's extension names. Bytes that still arrive in another format (an app without that
field) are converted with Pillow when it is installed (it comes with ``darkroom[server]``).
"""

from __future__ import annotations

import io
from pathlib import Path

from darkroom.client.errors import DarkroomClientError

SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".avif": "avif"}
FORMAT_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp", "avif": ".avif"}
_PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}


class UnsupportedOutput(DarkroomClientError, ValueError):
    """An output path whose extension names no format the apps write."""

    def __init__(self, path: Path) -> None:
        supported = ", ".join(SUFFIX_FORMATS)
        what = f"extension {path.suffix!r}" if path.suffix else "no extension"
        detail = f"{path} has {what}; the extension chooses the image format: use one of {supported}"
        super().__init__(None, detail, "unsupported_output")


def format_for(path: Path) -> str:
    """``png``, ``jpeg`` or ``webp`` for an output path; UnsupportedOutput otherwise."""
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedOutput(path)
    return fmt


def sniff(data: bytes) -> str | None:
    """The format of encoded image bytes, by their signature (None: not one of ours)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return "avif"
    return None


def ensure_format(data: bytes, fmt: str, quality: int = 95) -> bytes:
    """``data`` in format ``fmt``: as it is when it already is, else converted with Pillow."""
    found = sniff(data)
    if found in (fmt, None):
        return data
    try:
        from PIL import Image
    except ImportError:
        raise DarkroomClientError(
            None, f"the server sent {found.upper()} and the output asks for {fmt.upper()}; converting "
            "needs Pillow (pip install pillow), or name the output with the extension of what the app "
            "writes", "unsupported_output",
        ) from None
    with Image.open(io.BytesIO(data)) as image:
        if fmt == "jpeg" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")  # JPEG has no alpha
        out = io.BytesIO()
        image.save(out, _PIL_NAMES[fmt], quality=quality)
    return out.getvalue()
