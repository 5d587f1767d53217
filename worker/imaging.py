"""All image format conversion for Darkroom: bytes -> arrays -> tensors -> bytes (docs/decisions.md §6-§9).

Importing this module does not import torch; the tensor functions import it when called. What an
input must be to be accepted at all (format, caps, data URIs, integrity) is darkroom/acceptance.py,
which the API uses too; :func:`decode` opens inputs through it.

Choices made here:

* **Caps** (bytes, pixels, sides) are checked on the header by darkroom.acceptance before any pixel
  data is decoded. Pillow's own bomb guard (the process-global ``Image.MAX_IMAGE_PIXELS``) is left
  alone: it still refuses anything over twice its limit (DecompressionBombError, mapped to
  ImageTooLarge), and a DecompressionBombWarning that a warnings filter turned into an error maps
  the same way. With the default caps ours is the tighter check; a cap configured above Pillow's
  limit therefore reaches at most ``2 * MAX_IMAGE_PIXELS`` (about 179 megapixels), and between the
  two Pillow emits its warning.
* ``ImageFile.LOAD_TRUNCATED_IMAGES`` is a process-global switch; :func:`decode` refuses to run while
  anything has turned it on (it would accept truncated files silently) instead of flipping it back.
* **First frame** of animated GIF/WebP/PNG and multi-page TIFF; EXIF orientation is applied (a broken
  EXIF block is ignored, the pixels are still good).
* **Colour**: grey, palette, premultiplied and other modes become RGB, alpha is split off untouched.
  CMYK goes through its embedded ICC profile to sRGB with ``PIL.ImageCms`` (plain ``convert`` when it
  has none, when ImageCms is missing or the profile is unusable). Only an RGB ICC profile is carried
  to the output; CMYK and grey profiles are dropped (their pixels are sRGB / replicated grey).
* **16 bit**: single-channel 16-bit and 32-bit inputs (``I;16*``, ``I``, ``F``) decode to ``uint16``
  arrays (``I`` clipped to 0..65535, ``F`` read as 0..1) so the tensor keeps their precision. Pillow
  reads 16-bit-per-channel RGB(A) files as 8-bit, so those arrive with 8 bits.
* **Output**: PNG at zlib level ``PNG_COMPRESS_LEVEL`` = 1 (levels 6 and 9 take longer for 5-10 %
  fewer bytes on photos; ``encode_within`` tries them when a file is over its cap). JPEG is flattened
  onto white, 4:4:4 chroma at quality >= 90; WebP keeps alpha (``exact``). Images are rebuilt from
  arrays, so no EXIF, GPS, XMP or comment can leak; only the ICC profile is written.
* **Encoders** (``benchmarks/codecs.py``; medians at 1024², 2 busy cores, so ratios, not absolutes):
  PNG is written by OpenCV's libpng, every row with the SUB filter at levels <= 3: 61 ms for a
  photo-like RGB image and 93 ms for noise, against Pillow's 129 and 178 ms at the same level, for
  bytes within about 1 % of Pillow's (+9 % on flat graphics with text, +30 % on a synthetic gradient;
  the per-row filter choice that Pillow and libpng make is the cost; imagecodecs' png/spng were no
  faster). At those levels zlib's RLE strategy is used where a sample of rows says it loses nothing
  (:func:`_rle_suits`: photos and noise, 2.5-3x faster again). At levels 6 and 9 libpng chooses per
  row. OpenCV writes no ICC profile by itself on every version, so :func:`_png_with_icc` inserts the
  iCCP chunk. JPEG goes through OpenCV too:
  the same libjpeg-turbo settings write Pillow's bytes exactly (ICC in APP2 segments split as Pillow
  splits them) at about the same speed, but OpenCV releases the GIL for the whole encode where
  Pillow holds it for each chunk, so Celery's job-slot threads overlap. WebP (Pillow method 2: about
  half cv2's fixed method 4) and AVIF stay on Pillow. Without OpenCV, or if it fails, Pillow writes
  every format.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageFile, ImageFont, ImageOps

from darkroom.acceptance import PIL_NAMES, ImageLimits, check_size, open_checked
from darkroom.apps.pipeline import MIN_SHRINK_QUALITY
from darkroom.errors import ImageTooLarge, InternalError, InvalidInput, OutputTooLarge, UnsupportedImage

try:  # LittleCMS bindings are optional in Pillow builds.
    from PIL import ImageCms
except ImportError:  # pragma: no cover - depends on the Pillow build
    ImageCms = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import torch


log = logging.getLogger(__name__)

OUTPUT_FORMATS = ("png", "jpeg", "webp", "avif")
PNG_COMPRESS_LEVEL = 1

_OUTPUT = {  # format -> (content type, extension, max side)
    "png": ("image/png", "png", 2**31 - 1),
    "jpeg": ("image/jpeg", "jpg", 65_500),
    "webp": ("image/webp", "webp", 16_383),
    "avif": ("image/avif", "avif", 65_535),
}
PNG_LEVELS = (6, 9)  # compression levels encode_within tries when a PNG is over its byte cap
# libwebp's effort (0-6, Pillow's default 4). Measured on a 1024² photo-like image at quality 90:
# method 4 took 60 ms for 24.9 KB, method 2 23 ms for 25.7 KB (3 % larger, same quality setting).
WEBP_METHOD = 2
PNG_SUB_FILTER_MAX_LEVEL = 3  # zlib's fast levels: OpenCV writes every row with the SUB filter
_PNG_ICC_NAME = b"ICC Profile"  # the iCCP chunk's profile name (Pillow's)
_JPEG_ICC_CHUNK = 65_519  # profile bytes per APP2 segment: 65,535 less the length (2) and header (14)
_WIDE_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """First frame as arrays: ``rgb`` (H, W, 3) and ``alpha`` (H, W) or None, both uint8 or uint16."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    icc_profile: bytes | None
    width: int
    height: int
    source_format: str

    @property
    def bit_depth(self) -> int:
        """8 or 16."""
        return 16 if self.rgb.dtype == np.uint16 else 8


@dataclass(frozen=True)
class EncodedImage:
    """An encoded output file."""

    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


# --- decoding --------------------------------------------------------------------------------------


def decode(data: bytes, limits: ImageLimits) -> DecodedImage:
    """Probe, then decode the first frame to arrays (orientation applied, alpha split off)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise InternalError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is enabled in this process; "
            "refusing to decode because truncated inputs would be accepted silently"
        )
    im, info = open_checked(data, limits)
    with im:
        plain = _decode_plain_png(data) if info.format == "png" else None
        if plain is not None and plain[0].shape[:2] == (im.height, im.width):
            (rgb, alpha), icc = plain, _rgb_profile(im.info.get("icc_profile"))
        else:
            _load_first_frame(im, limits)
            frame = _apply_orientation(im)
            rgb, alpha, icc = _to_arrays(frame)
    height, width = rgb.shape[:2]
    return DecodedImage(rgb, alpha, icc, width, height, info.format)


_PNG_NOT_PLAIN = (b"tRNS", b"eXIf", b"acTL")  # transparency by colour key, EXIF orientation, animation
_PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")  # may hold "Raw profile type exif", which Pillow reads as EXIF


def _plain_png(data: bytes) -> bool:
    """True for one 8-bit RGB or RGBA image with no colour-key transparency, no EXIF, no animation, its
    chunks complete up to IEND: the PNGs OpenCV decodes to exactly Pillow's pixels."""
    if len(data) < 33 or data[12:16] != b"IHDR" or data[24] != 8 or data[25] not in (2, 6):
        return False
    pos = 8
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        exif_text = kind in _PNG_TEXT and data[pos + 8 : pos + 29] == b"Raw profile type exif"
        if kind in _PNG_NOT_PLAIN or exif_text:
            return False
        if kind == b"IEND":
            return True
        pos += 12 + length
    return False  # cut short: Pillow says how


def _decode_plain_png(data: bytes) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(rgb, alpha)`` of a :func:`_plain_png` file through OpenCV's libpng, which releases the GIL for
    the whole decode (Pillow holds it: two threads decoding 1024² PNGs ran 1.04x one thread's rate
    with Pillow and 1.80x with OpenCV), so job slots decode while the batcher thread drives the device.
    None for any other file, or when OpenCV fails: Pillow decodes it, or reports what is wrong."""
    cv2 = _opencv()
    if cv2 is None or not _plain_png(data):
        return None
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != (3 if data[25] == 2 else 4):
        return None
    if arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), None
    rgba = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])


def _load_first_frame(im: Image.Image, limits: ImageLimits) -> None:
    try:
        im.seek(0)
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image is too large ({exc})") from None
    except MemoryError:
        raise
    except Exception as exc:  # hostile data: Pillow raises OSError, SyntaxError, ValueError, ...
        raise UnsupportedImage(f"truncated or corrupt image data ({exc})") from None
    check_size(*im.size, limits)  # a GIF frame can grow the canvas


def _apply_orientation(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block is ignored."""
    try:
        if im.getexif().get(0x0112, 1) in (0, 1):
            return im
        return ImageOps.exif_transpose(im)
    except MemoryError:
        raise
    except Exception as exc:  # hostile metadata must not fail an otherwise good image
        log.debug("ignoring unreadable EXIF orientation: %s", exc)
        return im


def _rgb_profile(icc: Any) -> bytes | None:
    """The ICC profile when it describes an RGB colour space, else None."""
    if isinstance(icc, bytes) and len(icc) >= 20 and icc[16:20] == b"RGB ":
        return icc
    return None


def _to_arrays(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """``(rgb, alpha, rgb_icc_profile)`` for any mode Pillow opened."""
    if im.mode == "CMYK":
        return _cmyk_to_rgb(im), None, None
    icc = _rgb_profile(im.info.get("icc_profile"))
    if im.mode in _WIDE_GREY:
        rgb, alpha = _wide_grey(im)
        return rgb, alpha, icc
    target = "RGBA" if im.has_transparency_data else "RGB"
    if im.mode != target:
        try:
            im = im.convert(target)
        except ValueError as exc:
            raise UnsupportedImage(f"unsupported colour mode {im.mode} ({exc})") from None
    arr = np.asarray(im)
    if target == "RGB":
        return arr.copy(), None, icc  # writable, so torch.from_numpy can share it
    return np.ascontiguousarray(arr[..., :3]), arr[..., 3].copy(), icc


def _wide_grey(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """16/32-bit single-channel image -> uint16 RGB, plus alpha from a tRNS grey value."""
    grey = np.asarray(im)
    if grey.dtype.kind == "f":
        grey = np.clip(np.nan_to_num(grey, nan=0.0), 0.0, 1.0) * 65535.0 + 0.5
    grey16 = np.clip(grey, 0, 65535).astype(np.uint16)
    trns = im.info.get("transparency")
    alpha = None
    if isinstance(trns, int):
        alpha = np.where(grey16 == trns, 0, 65535).astype(np.uint16)
    return np.repeat(grey16[..., None], 3, axis=2), alpha


def _cmyk_to_rgb(im: Image.Image) -> np.ndarray:
    """CMYK -> RGB through the embedded ICC profile when possible, else Pillow's plain formula."""
    icc = im.info.get("icc_profile")
    if icc and ImageCms is not None:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            return np.asarray(out).copy()
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
            log.warning("CMYK ICC profile unusable (%s); converting without it", exc)
    return np.asarray(im.convert("RGB")).copy()


# --- tensors ---------------------------------------------------------------------------------------


def to_tensor(images: Sequence[DecodedImage], device: str | torch.device = "cpu") -> torch.Tensor:
    """``(B, 3, H, W)`` float32 in [0, 1] on ``device`` (uint8 / 255, uint16 / 65535); alpha stays out.
    Images decoded on the device (worker.device_io.DeviceImage) are converted where they are."""
    import torch

    if not images:
        raise ValueError("to_tensor needs at least one image")
    sizes = {(im.height, im.width) for im in images}
    if len(sizes) != 1:
        raise ValueError(f"images of one batch must share a size, got (H, W) {sorted(sizes)}")
    if not all(isinstance(im.rgb, np.ndarray) for im in images):  # some decoded on the device (nvJPEG)
        from worker import device_io

        return torch.cat([_bhwc_to_bchw(im.rgb[None], device) if isinstance(im.rgb, np.ndarray)
                          else device_io.device_images_to_float([im]) for im in images])
    if len({im.rgb.dtype for im in images}) == 1:
        cv2 = _opencv() if torch.device(device).type == "cpu" else None
        if cv2 is not None and images[0].rgb.ndim == 3 and _planes_suit(images[0].height, images[0].width):
            return _planes_to_float(cv2, [im.rgb for im in images]).div_(_full_scale(images[0].rgb))
        arr = images[0].rgb[None] if len(images) == 1 else np.stack([im.rgb for im in images])
        return _bhwc_to_bchw(arr, device)
    return torch.cat([_bhwc_to_bchw(im.rgb[None], device) for im in images])


def _bhwc_to_bchw(arr: np.ndarray, device: str | torch.device) -> torch.Tensor:
    import torch

    scale = _full_scale(arr)
    if not (arr.flags.writeable and arr.flags.c_contiguous):
        arr = np.array(arr, order="C")  # from_numpy needs positive strides and warns on read-only data
    if torch.device(device).type == "cpu":
        t = torch.from_numpy(arr)
    else:  # move the integers (4x less to copy than float32), through pinned memory on CUDA
        from worker import device_io

        t = device_io.upload(arr, device)
    x = t.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
    return x.div_(scale)


def _full_scale(arr: np.ndarray) -> float:
    """The integer value that maps to 1.0: 65535 for 16-bit samples, 255 for 8-bit ones."""
    return 65535.0 if arr.dtype == np.uint16 else 255.0


PLANES_MIN_PIXELS = 512 * 512  # below, a batch converts in a few torch calls instead of 4 per image


def _planes_suit(height: int, width: int) -> bool:
    """Whether the conversions go through OpenCV's planes: from 512² up. Smaller images gain little
    there, and a worker's batch of sixteen 256² images would make some 60 OpenCV calls where the
    strided path makes a few torch calls, each call holding the GIL while it parses its arguments
    (4-5 % of a 256² worker's GIL time in a profile). Never for a side under 16, where OpenCV's
    binding would take a plane of at most four values for a scalar."""
    return min(height, width) >= 16 and height * width >= PLANES_MIN_PIXELS


def _planes_to_float(cv2: Any, arrays: Sequence[np.ndarray]) -> torch.Tensor:
    """``(H, W, C)`` integer arrays of one size -> ``(B, C, H, W)`` float32, not scaled: OpenCV splits
    each image into its channel planes (SIMD), then each plane converts in one contiguous pass, with no
    stacked copy of the batch first. The same values as converting the permuted batch, which is a
    strided pass (1024², 2 threads: 0.9 against 1.2 ms)."""
    import torch

    height, width, channels = arrays[0].shape
    out = torch.empty((len(arrays), channels, height, width), dtype=torch.float32)
    for i, arr in enumerate(arrays):
        for c, plane in enumerate(cv2.split(np.ascontiguousarray(arr))):
            out[i, c].copy_(torch.from_numpy(plane))
    return out


def from_tensor(x: torch.Tensor) -> list[np.ndarray]:
    """``(B, 3, H, W)`` float -> one ``(H, W, 3)`` uint8 array per item (clamped to [0, 1], rounded)."""
    import torch

    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
    with torch.no_grad():
        return _to_uint8_hwc(x.detach())


def _to_uint8_hwc(x: torch.Tensor) -> list[np.ndarray]:
    """``(B, C, H, W)`` float -> one ``(H, W, C)`` uint8 array per item (clamped to [0, 1], rounded half
    to even).

    On the CPU with OpenCV: the levels (x · 255, float32, as :func:`levels_255`) in one contiguous pass,
    then OpenCV rounds half to even and saturates each plane to uint8 and interleaves the planes (SIMD):
    the same bytes as rounding, clamping and casting in torch, without its strided writes. Without
    OpenCV each channel is written straight into the interleaved uint8 array (the cast and the transpose
    in one strided copy)."""
    import torch

    if x.device.type != "cpu":  # uint8 on the device, one copy back (pinned on CUDA)
        from worker import device_io

        return list(device_io.download(levels_255(x).to(torch.uint8).permute(0, 2, 3, 1).contiguous()))
    cv2 = _opencv() if _planes_suit(x.shape[2], x.shape[3]) else None
    if cv2 is not None and x.shape[1] <= 4:
        y = _times_255(x).contiguous()
        return [cv2.merge([cv2.multiply(y[i, c].numpy(), 1.0, dtype=cv2.CV_8U) for c in range(y.shape[1])])
                .reshape(y.shape[2], y.shape[3], y.shape[1]) for i in range(y.shape[0])]
    y = levels_255(x)
    out = torch.empty((y.shape[0], y.shape[2], y.shape[3], y.shape[1]), dtype=torch.uint8)
    for c in range(y.shape[1]):
        out[..., c].copy_(y[:, c])
    return list(out.numpy())


def levels_255(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> float levels 0..255 (clamped, rounded half to even), a new tensor: what every
    float-to-uint8 conversion casts (here and in worker.device_io)."""
    return _times_255(x).round_().clamp_(0.0, 255.0)


def _times_255(x: torch.Tensor) -> torch.Tensor:
    """``x`` · 255 in float32, a new tensor: the levels before rounding and clamping."""
    return x.float().mul(255.0)


def to_rgba_tensor(images: Sequence[DecodedImage], device: str | torch.device = "cpu") -> torch.Tensor:
    """``(B, 4, H, W)`` float32 in [0, 1] (straight alpha, 1 where an image has none), written in
    place: one strided pass per image from the integers, no intermediate RGB tensor."""
    import torch

    if not images:
        raise ValueError("to_rgba_tensor needs at least one image")
    sizes = {(im.height, im.width) for im in images}
    if len(sizes) != 1:
        raise ValueError(f"images of one batch must share a size, got (H, W) {sorted(sizes)}")
    (height, width), = sizes
    out = torch.empty((len(images), 4, height, width), dtype=torch.float32, device=device)
    for i, im in enumerate(images):
        scale = _full_scale(im.rgb)
        out[i, :3].copy_(_integers(im.rgb, device).permute(2, 0, 1)).div_(scale)
        if im.alpha is None:
            out[i, 3].fill_(1.0)
        else:
            top = _full_scale(im.alpha)
            out[i, 3].copy_(_integers(im.alpha, device)).div_(top)
    return out


def _integers(arr: np.ndarray, device: str | torch.device) -> torch.Tensor:
    import torch

    if arr.dtype == np.uint16:
        arr = arr.astype(np.int32)  # torch has no uint16 arithmetic on every build
    elif not (arr.flags.writeable and arr.flags.c_contiguous):
        arr = np.array(arr, order="C")
    if torch.device(device).type == "cpu":
        return torch.from_numpy(arr)
    from worker import device_io

    return device_io.upload(arr, device)


def from_rgba_tensor(x: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(B, 4, H, W)`` float -> one ``(rgb (H, W, 3), alpha (H, W))`` uint8 pair per item."""
    import torch

    if x.dim() != 4 or x.shape[1] != 4:
        raise ValueError(f"expected a (B, 4, H, W) tensor, got shape {tuple(x.shape)}")
    with torch.no_grad():
        arr = _to_uint8_hwc(x.detach())
    return [(a[..., :3], a[..., 3]) for a in arr]


def resize_rgb(image: DecodedImage, size: tuple[int, int]) -> DecodedImage:
    """Bilinear resize to ``(H, W)``, aspect ignored (docs/decisions.md §6), antialiased on any shrinking
    axis.

    Same dtype out as in; alpha (if any) is resized alike. Runs on CPU with torch.
    """
    height, width = size
    if height <= 0 or width <= 0:
        raise ValueError(f"target size must be positive, got {size}")
    if (height, width) == (image.height, image.width):
        return image
    rgb = _resize_array(image.rgb, size)
    alpha = None if image.alpha is None else _resize_array(image.alpha[..., None], size)[..., 0]
    return dataclasses.replace(image, rgb=rgb, alpha=alpha, width=width, height=height)


def _resize_array(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear on the interleaved array as a channels-last tensor (no transposing copies), rounded back
    to the input's dtype: 64² -> 1024² in 5 ms on one thread, against 21 ms through a planar copy."""
    import torch
    import torch.nn.functional as F

    top = _full_scale(arr)
    src = arr.astype(np.int32) if arr.dtype == np.uint16 else np.ascontiguousarray(arr)
    x = torch.from_numpy(src)[None].permute(0, 3, 1, 2).to(torch.float32)  # keeps the channels-last strides
    shrink = size[0] < arr.shape[0] or size[1] < arr.shape[1]
    y = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    y = y.round_().clamp_(0.0, top)
    out = torch.empty((size[0], size[1], arr.shape[2]), dtype=torch.uint8 if top == 255.0 else torch.int32)
    out.permute(2, 0, 1)[None].copy_(y)
    return out.numpy() if top == 255.0 else out.numpy().astype(np.uint16)


# --- encoding --------------------------------------------------------------------------------------


def encode(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    icc_profile: bytes | None = None,
    fmt: str = "png",
    quality: int = 95,
    png_level: int = PNG_COMPRESS_LEVEL,
) -> EncodedImage:
    """Encode ``rgb`` (H, W, 3) uint8 and optional ``alpha`` (H, W) uint8/uint16 as png, jpeg or webp.

    ``quality`` (1-100) applies to jpeg and webp; JPEG flattens alpha onto white; only the ICC profile
    is written as metadata.
    """
    fmt = _output_format(fmt)
    if not 1 <= int(quality) <= 100:
        raise InvalidInput(f"output_quality must be between 1 and 100, got {quality}")
    height, width = _check_arrays(rgb, alpha)
    content_type, extension, max_side = _OUTPUT[fmt]
    if max(width, height) > max_side:
        raise InvalidInput(
            f"{fmt} output is limited to {max_side} pixels a side and the image is {width}x{height}; "
            "choose png"
        )
    pixels = _output_pixels(rgb, _alpha8(alpha), fmt)
    data = _encode_pixels(pixels, fmt, int(quality), icc_profile, int(png_level))
    return EncodedImage(data, content_type, extension, width, height)


def encode_within(
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    icc_profile: bytes | None,
    fmt: str,
    quality: int,
    max_bytes: int | None,
) -> EncodedImage:
    """:func:`encode`, then, while the file is over ``max_bytes``: a lower quality for lossy formats
    (the highest that fits, found by bisection, not below ``MIN_SHRINK_QUALITY``) or a higher
    compression level for PNG. Raises OutputTooLarge with the smallest size reached."""
    first = encode(rgb, alpha, icc_profile, fmt, quality)
    if max_bytes is None or len(first.data) <= max_bytes:
        return first
    fmt = _output_format(fmt)
    if fmt == "png":
        tries = (encode(rgb, alpha, icc_profile, fmt, quality, level) for level in PNG_LEVELS)
        best = first
        for out in tries:
            best = out if len(out.data) < len(best.data) else best
            if len(out.data) <= max_bytes:
                return out
        raise _too_large(fmt, len(best.data), max_bytes, "at compression level 9")
    lo, hi, fits = MIN_SHRINK_QUALITY, int(quality) - 1, None
    smallest = first
    while lo <= hi:
        q = (lo + hi) // 2
        out = encode(rgb, alpha, icc_profile, fmt, q)
        smallest = out if len(out.data) < len(smallest.data) else smallest
        if len(out.data) <= max_bytes:
            fits, lo = out, q + 1
        else:
            hi = q - 1
    if fits is None:
        floor = min(int(quality), MIN_SHRINK_QUALITY)  # a quality already below the floor stays as asked
        raise _too_large(fmt, len(smallest.data), max_bytes, f"at quality {floor}")
    return fits


def _too_large(fmt: str, reached: int, max_bytes: int, how: str) -> OutputTooLarge:
    return OutputTooLarge(
        f"the {fmt} output is {reached:,} bytes {how}, over max_bytes ({max_bytes:,}); "
        "allow more bytes, make the image smaller or choose another format"
    )


def _output_format(fmt: str) -> str:
    name = str(fmt).lower()
    name = "jpeg" if name == "jpg" else name
    if name not in OUTPUT_FORMATS:
        raise InvalidInput(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    return name


def _check_arrays(rgb: np.ndarray, alpha: np.ndarray | None) -> tuple[int, int]:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be a (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    if alpha is not None and (alpha.shape != rgb.shape[:2] or alpha.dtype not in (np.uint8, np.uint16)):
        raise ValueError(
            f"alpha must be a {rgb.shape[:2]} uint8/uint16 array, got {alpha.dtype} {alpha.shape}"
        )
    return rgb.shape[0], rgb.shape[1]


def _alpha8(alpha: np.ndarray | None) -> np.ndarray | None:
    """Alpha as uint8 (uint16 is rounded: a / 257)."""
    if alpha is None or alpha.dtype == np.uint8:
        return alpha
    return ((alpha.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _output_pixels(rgb: np.ndarray, alpha: np.ndarray | None, fmt: str) -> np.ndarray:
    """What is encoded, as a C-contiguous uint8 array and nothing else (so no metadata can ride
    along): RGB, RGBA, or RGB flattened onto white for JPEG."""
    if alpha is None:
        return np.ascontiguousarray(rgb)
    if fmt == "jpeg":
        a = alpha.astype(np.uint16)[..., None]
        flat = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
        return flat.astype(np.uint8)
    return np.dstack([rgb, alpha])


def _encode_pixels(pixels: np.ndarray, fmt: str, quality: int, icc: bytes | None, png_level: int) -> bytes:
    """PNG and JPEG through OpenCV when it imports (faster, and it releases the GIL: see the module
    docstring); everything else, and anything OpenCV refuses, through Pillow."""
    cv2 = _opencv()
    data = None if cv2 is None else _encode_opencv(cv2, pixels, fmt, quality, icc, png_level)
    return _encode_pillow(pixels, fmt, quality, icc, png_level) if data is None else data


def _encode_pillow(pixels: np.ndarray, fmt: str, quality: int, icc: bytes | None, png_level: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, **_save_options(fmt, quality, icc, png_level))
    return buf.getvalue()


def _encode_opencv(
    cv2: Any, pixels: np.ndarray, fmt: str, quality: int, icc: bytes | None, png_level: int
) -> bytes | None:
    """PNG or JPEG written by OpenCV, the ICC profile added to the file; None for other formats, an
    OpenCV without ``IMWRITE_JPEG_SAMPLING_FACTOR`` (no 4:4:4 JPEG), or an encoder failure."""
    if fmt == "png":
        data = _opencv_encode(cv2, ".png", pixels, _png_params(cv2, png_level, pixels))
        return _png_with_icc(data, icc) if data and icc else data
    if fmt == "jpeg" and hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
        data = _opencv_encode(cv2, ".jpg", pixels, _jpeg_params(cv2, quality))
        return jpeg_with_icc(data, icc) if data and icc else data
    return None


@functools.cache
def _opencv() -> Any:
    """The cv2 module (a worker dependency), or None where it does not import."""
    try:
        import cv2
    except ImportError:
        log.info("OpenCV is not installed; PNG and JPEG are encoded with Pillow")
        return None
    return cv2


def _opencv_encode(cv2: Any, ext: str, pixels: np.ndarray, params: list[int]) -> bytes | None:
    """``cv2.imencode`` of RGB(A) ``pixels`` (swapped to OpenCV's BGR(A)); None if OpenCV fails."""
    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    try:
        ok, buf = cv2.imencode(ext, bgr, params)
    except cv2.error as exc:
        ok, buf = False, exc
    if not ok:
        log.warning("OpenCV could not encode %s (%s); falling back to Pillow", ext, buf)
        return None
    return buf.tobytes()


def _png_params(cv2: Any, level: int, pixels: np.ndarray) -> list[int]:
    """zlib ``level`` with its default strategy (as Pillow). At the fast levels (<= 3) every row gets
    the SUB filter instead of libpng's per-row choice (about 1.4x faster for about the same size), and
    zlib's RLE strategy where :func:`_rle_suits` the image."""
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if level <= PNG_SUB_FILTER_MAX_LEVEL and hasattr(cv2, "IMWRITE_PNG_FILTER"):  # recent OpenCV only
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
        if _rle_suits(pixels):
            params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    return params


PNG_RLE_SAMPLE_BLOCKS = 6  # blocks of 4 rows, spread over the image
PNG_RLE_MAX_GROWTH = 1.05  # RLE is chosen while its sample is at most 5 % larger than LZ77's


def _rle_suits(pixels: np.ndarray) -> bool:
    """Whether zlib's RLE strategy (runs only, no LZ77 matches) suits this image: photos and noise, where
    it wrote a 1024² PNG 2.5-3x faster (photo-like 53 -> 21 ms, noise 53 -> 17 ms, on one core) in as
    many or fewer bytes, but not graphics, gradients and flat art, where matches make files 2-24x smaller.
    Decided by compressing a sample of rows, SUB-filtered as libpng will, both ways (0.4-2 ms at 1024²);
    on twelve test images it chose the smaller strategy every time."""
    h, w, c = pixels.shape
    blocks, last = min(PNG_RLE_SAMPLE_BLOCKS, max(1, h // 4)), max(h - 4, 0)
    starts = [i * last // (blocks - 1) for i in range(blocks)] if blocks > 1 else [0]  # evenly spread
    rows = np.concatenate([pixels[s : s + 4] for s in starts]).reshape(-1, w * c)
    sub = rows.copy()
    sub[:, c:] -= rows[:, :-c]  # uint8 arithmetic wraps, as the PNG SUB filter does
    data = sub.tobytes()
    rle = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    return len(rle.compress(data) + rle.flush()) <= PNG_RLE_MAX_GROWTH * len(zlib.compress(data, 1))


def _jpeg_params(cv2: Any, quality: int) -> list[int]:
    """The same settings as :func:`_save_options` gives Pillow; both write the same bytes."""
    sampling = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if quality >= 90 else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
    return [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]


def _png_with_icc(png: bytes, icc: bytes) -> bytes:
    """``png`` with an iCCP chunk right after IHDR (the spec wants it before PLTE and IDAT): profile
    name, NUL, compression method 0, the zlib-compressed profile; CRC over type and data."""
    if png[12:16] != b"IHDR":
        raise InternalError("the PNG encoder wrote no IHDR chunk first")
    end = 8 + 12 + int.from_bytes(png[8:12], "big")  # signature, then length + type + data + CRC
    body = _PNG_ICC_NAME + b"\0\0" + zlib.compress(icc)
    crc = zlib.crc32(b"iCCP" + body).to_bytes(4, "big")
    return b"".join([png[:end], len(body).to_bytes(4, "big"), b"iCCP", body, crc, png[end:]])


def jpeg_with_icc(jpeg: bytes, icc: bytes) -> bytes:
    """``jpeg`` with the profile in APP2 ``ICC_PROFILE`` segments (numbered from 1) after SOI and a
    leading JFIF APP0 segment, split as Pillow splits it (also used for nvJPEG's files, worker.device_io)."""
    if jpeg[:2] != b"\xff\xd8":
        raise InternalError("the JPEG encoder wrote no SOI marker first")
    size = _JPEG_ICC_CHUNK
    chunks = [icc[i : i + size] for i in range(0, len(icc), size)]
    if len(chunks) > 255:
        raise InvalidInput(f"the ICC profile ({len(icc):,} bytes) is too large for a JPEG; choose png")
    segments = [
        b"\xff\xe2" + (len(c) + 16).to_bytes(2, "big") + b"ICC_PROFILE\0" + bytes([i, len(chunks)]) + c
        for i, c in enumerate(chunks, start=1)
    ]
    at = 4 + int.from_bytes(jpeg[4:6], "big") if jpeg[2:4] == b"\xff\xe0" else 2
    return b"".join([jpeg[:at], *segments, jpeg[at:]])


def _save_options(
    fmt: str, quality: int, icc_profile: bytes | None, png_level: int = PNG_COMPRESS_LEVEL
) -> dict[str, Any]:
    opts: dict[str, Any] = {"format": PIL_NAMES[fmt]}
    if icc_profile:
        opts["icc_profile"] = icc_profile
    if fmt == "png":
        opts["compress_level"] = png_level
    elif fmt == "jpeg":
        opts.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif fmt == "avif":
        opts.update(quality=quality)
    else:
        opts.update(quality=quality, exact=True, method=WEBP_METHOD)
    return opts


# --- data URIs -------------------------------------------------------------------------------------


def data_uri(encoded: EncodedImage) -> str:
    """``data:<content type>;base64,<data>``."""
    return f"data:{encoded.content_type};base64,{base64.b64encode(encoded.data).decode('ascii')}"


# --- text ------------------------------------------------------------------------------------------

TEXT_LINE_SPACING = 0.2  # extra space between lines, as a fraction of the text size
MAX_TEXT_PIXELS = 16_000_000  # one rasterised text block (before tiling) may not be larger


@dataclass(frozen=True, eq=False)
class TextMask:
    """Text rasterised once, white on black: ``fill`` is the glyphs' coverage, ``outline`` the glyphs
    with their stroke (equal to ``fill`` without a stroke). Both (h, w) uint8, read-only (cached)."""

    fill: np.ndarray
    outline: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.fill.shape[1], self.fill.shape[0]


@functools.lru_cache(maxsize=16)
def _truetype(path: str, size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size_px)


@functools.lru_cache(maxsize=32)
def render_text(
    text: str, font_path: str, size_px: int, stroke_width: int = 0, align: str = "left"
) -> TextMask:
    """``text`` (``\\n`` starts a line; lines aligned ``left``, ``center`` or ``right``) in the font
    at ``font_path``, ``size_px`` high, cut to its ink box (stroke included). Raises InvalidInput when
    the block would be larger than ``MAX_TEXT_PIXELS``."""
    font = _truetype(str(font_path), int(size_px))
    spacing = round(size_px * TEXT_LINE_SPACING)
    opts: dict[str, Any] = {"font": font, "spacing": spacing, "align": align, "stroke_width": stroke_width}
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox((0, 0), text, **opts)
    width, height = max(1, math.ceil(right - left)), max(1, math.ceil(bottom - top))
    if width * height > MAX_TEXT_PIXELS:
        raise InvalidInput(
            f"the text at {size_px} px is {width}x{height} px, more than {MAX_TEXT_PIXELS:,} pixels; "
            "make it smaller or shorter (break long lines with \\n)"
        )

    def draw(stroke_fill: int) -> np.ndarray:
        im = Image.new("L", (width, height), 0)
        ImageDraw.Draw(im).multiline_text((-left, -top), text, fill=255, stroke_fill=stroke_fill, **opts)
        arr = np.asarray(im).copy()
        arr.flags.writeable = False
        return arr

    fill = draw(stroke_fill=0)  # the stroke drawn in black on black: only the glyphs show
    return TextMask(fill, draw(stroke_fill=255) if stroke_width else fill)


def text_mask_tensor(mask: TextMask, device: str | torch.device = "cpu") -> torch.Tensor:
    """``(2, h, w)`` float32 coverage in [0, 1] on ``device``: fill, then outline."""
    import torch

    both = np.stack([mask.fill, mask.outline])  # a fresh, writable array
    return torch.from_numpy(both).to(device).to(torch.float32).div_(255.0)
