"""Image acceptance checks: is this input an image Darkroom takes? Torch-free, so the API answers a
synchronous 422 before a job exists and the worker checks the same way before it decodes.

* **Formats** are sniffed from the content (never the file name or a declared content type): PNG,
  JPEG, WebP, GIF, TIFF, BMP. Pillow is told to try only the sniffed format.
* **Caps** (bytes, pixels, sides) are checked on the header, before any pixel data is decoded (see
  worker/imaging.py for how they meet Pillow's own bomb guard).
* **Data URIs** are parsed with a byte cap checked before base64 decoding.
* :func:`screen` = :func:`probe` plus an integrity check that finds truncated files without decoding
  them at full size:

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

import base64
import binascii
import io
import logging
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from darkroom.errors import ImageTooLarge, InvalidInput, UnsupportedImage

if TYPE_CHECKING:
    from darkroom.settings import Settings

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = ("png", "jpeg", "webp", "gif", "tiff", "bmp")
ACCEPTED_TEXT = "PNG, JPEG, WebP, GIF, TIFF or BMP"
FULL_CHECK_MAX_PIXELS = 4_000_000
CONTENT_TYPES = {
    "png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp",
    "gif": "image/gif", "tiff": "image/tiff", "bmp": "image/bmp",
}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "tiff": "tiff", "bmp": "bmp"}
PIL_NAMES = {
    "png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF", "tiff": "TIFF", "bmp": "BMP", "avif": "AVIF",
}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"BM", "bmp"),
)


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to every input before it is decoded."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side_px: int = 16384

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLimits:
        """The limits configured in ``settings`` (``max_input_bytes``, ``max_pixels``, ``max_side_px``)."""
        return cls(settings.max_input_bytes, settings.max_pixels, settings.max_side_px)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: format (one of ``ACCEPTED_FORMATS``), size, frame count, Pillow mode."""

    format: str
    width: int
    height: int
    frames: int
    mode: str


# --- sniffing and probing --------------------------------------------------------------------------


def sniff(data: bytes) -> str | None:
    """The accepted format the bytes really are (``"png"``, ``"jpeg"``, ...), or None."""
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def _describe_unknown(data: bytes) -> str:
    """A short name for data that is not an accepted image, for the error message."""
    head = bytes(data[:1024]).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        return "empty data"
    if b"<svg" in head:
        return "SVG"
    if head.startswith(b"<!doctype html") or b"<html" in head:
        return "HTML"
    if head.startswith(b"%pdf"):
        return "PDF"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF or other ISO media"
    text = head.decode("utf-8", "ignore")
    if b"\x00" not in head and sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
        return "text"
    return "unrecognised binary data"


def _check_bytes(data: bytes, limits: ImageLimits) -> None:
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"input is {len(data)} bytes; the largest accepted input is {limits.max_bytes} bytes"
        )


def check_size(width: int, height: int, limits: ImageLimits) -> None:
    """ImageTooLarge when a side or the pixel count is over the caps."""
    if width <= 0 or height <= 0:
        raise UnsupportedImage(f"image has an empty size ({width}x{height})")
    if max(width, height) > limits.max_side_px:
        raise ImageTooLarge(
            f"image is {width}x{height} pixels; the longest accepted side is {limits.max_side_px} pixels"
        )
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; "
            f"at most {limits.max_pixels} pixels are accepted"
        )


def _frame_count(im: Image.Image) -> int:
    """Frames or pages (GIF walks its blocks without decoding them); 1 when the count is unreadable."""
    try:
        return int(getattr(im, "n_frames", 1))
    except MemoryError:
        raise
    except Exception:  # hostile data: Pillow raises many types; the first frame may still be fine
        return 1


def open_checked(data: bytes, limits: ImageLimits) -> tuple[Image.Image, ImageInfo]:
    """Open lazily (header only) as the sniffed format and check every cap."""
    _check_bytes(data, limits)
    fmt = sniff(data)
    if fmt is None:
        raise UnsupportedImage(
            f"unsupported image data ({_describe_unknown(data)}); accepted formats: {ACCEPTED_TEXT}"
        )
    try:
        im = Image.open(io.BytesIO(data), formats=[PIL_NAMES[fmt]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"image is too large ({exc}); at most {limits.max_pixels} pixels "
            f"and {limits.max_side_px} pixels a side are accepted"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # hostile data: Pillow raises many types
        raise UnsupportedImage(f"not a readable {fmt.upper()} image ({exc})") from None
    try:
        check_size(*im.size, limits)
    except InvalidInput:
        im.close()
        raise
    return im, ImageInfo(fmt, im.size[0], im.size[1], _frame_count(im), im.mode)


def probe(data: bytes, limits: ImageLimits) -> ImageInfo:
    """Header-only check: format, size and caps, without decoding pixels. Raises InvalidInput subclasses."""
    im, info = open_checked(data, limits)
    im.close()
    return info


# --- data URIs ---


def parse_data_uri(uri: str, max_bytes: int | None = None) -> tuple[bytes, str]:
    """``(payload, declared mime type)`` of a base64 or percent-encoded ``data:`` URI.

    The declared type is only informational (decode sniffs the bytes). InvalidInput when malformed;
    ImageTooLarge when the payload is over ``max_bytes`` (absurd lengths are refused before decoding).
    """
    if not isinstance(uri, str) or not uri[:5].lower() == "data:":
        raise InvalidInput("not a data URI: it must start with 'data:'")
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise InvalidInput("malformed data URI: no ',' between the media type and the data")
    params = [p.strip() for p in header.split(";")]
    is_base64 = params[-1].lower() == "base64"
    mime = (params[0] if params[0] and "=" not in params[0] else "text/plain").lower()
    too_large = ImageTooLarge(f"data URI payload is over the {max_bytes} byte limit")
    if max_bytes is not None and len(payload) > 3 * max_bytes + 1024:  # no encoding inflates more than 3x
        raise too_large
    data = _b64decode(payload) if is_base64 else urllib.parse.unquote_to_bytes(payload)
    if max_bytes is not None and len(data) > max_bytes:
        raise too_large
    return data, mime


def _b64decode(payload: str) -> bytes:
    text = urllib.parse.unquote(payload) if "%" in payload else payload
    text = "".join(text.split())
    altchars = b"-_" if ("-" in text or "_" in text) else None
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"malformed data URI: the base64 payload does not decode ({exc})") from None


# --- screening ---


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

