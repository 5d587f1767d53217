"""Small images made in the tests (no files, no downloads)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def gradient(width: int = 32, height: int = 24) -> np.ndarray:
    """An RGB uint8 image with distinct values in every channel."""
    ys, xs = np.mgrid[0:height, 0:width]
    r = xs * 255 // max(width - 1, 1)
    g = ys * 255 // max(height - 1, 1)
    b = (xs + ys) * 255 // max(width + height - 2, 1)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def png_data_uri(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
