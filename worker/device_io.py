"""Moving pixels to and from a CUDA device, and JPEG coded on the device (docs/gpu.md).

worker/imaging.py does every conversion on the host; this module is its device half, used by the
workers when ``ctx.device`` is CUDA. Everything here also runs on the CPU (where it is the plain path),
so the code the GPU takes is the code the test suite exercises.

* **Copies**: :func:`upload` stages host arrays in pinned (page-locked) memory and copies with
  ``non_blocking=True``; :func:`download` copies into pinned memory and then waits for the current
  stream only. Pinned buffers come from PyTorch's caching host allocator, which reuses a block only
  after the copies recorded on it have finished, so a buffer freed while its copy is in flight is safe.
* **Streams**: :func:`batch_stream` runs a batch on a stream of its own (from a small pool per device),
  so one batch's work does not queue behind another thread's decode, encode or copies on the default
  stream. It waits for the caller's stream on entry and synchronises on exit, so tensors made inside are
  ready for any thread afterwards.
* **JPEG on the device** (torchvision's nvJPEG; torchvision is the optional ``gpu`` extra, imported
  only here and only when called): :func:`decode_on_device` and :func:`encode_on_device` take the device
  path when :func:`wants_device_decode` / :func:`wants_device_encode` say so and return None otherwise,
  so callers fall back to worker/imaging.py. EXIF orientation is applied here (torchvision applies it on
  the CPU only); the ICC profile is carried to the output as the CPU path carries it.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from darkroom.acceptance import ImageLimits, open_checked
from worker import imaging

log = logging.getLogger(__name__)

STREAMS_PER_DEVICE = 4  # batcher + a few slot threads at once; more streams buy no more overlap
# worker/imaging.py writes 4:4:4 chroma from this quality up and 4:2:0 below; nvJPEG (as torchvision
# drives it) always writes 4:4:4, so below this quality its files would be larger than the CPU's.
DEVICE_JPEG_MIN_QUALITY = 90
DEVICE_DECODE_MODES = ("RGB", "L")  # CMYK needs ImageCms on the host; JPEG has no 16-bit Pillow mode
# nvJPEG against Pillow (libjpeg-turbo) on the same file, in 8-bit levels. Both decoders meet the JPEG
# IDCT accuracy rules (IEEE 1180: each output within one level of the exact transform), then round the
# YCbCr -> RGB conversion on their own, so 4:4:4 files may differ by a few levels; a wrong channel order,
# colour matrix or orientation differs by tens on average. 4:2:0 adds the chroma upsampling, where
# decoders differ at colour edges: only the mean is bounded there, by torchvision's own CUDA test (< 2).
JPEG_DECODE_MAX_LEVELS_444 = 8
JPEG_DECODE_MEAN_LEVELS_444 = 1.0
JPEG_DECODE_MEAN_LEVELS_420 = 2.0
_ORIENTATION_TAG = 0x0112
INSTALL_HINT = (
    "install the gpu extra beside a CUDA build of torch (pip install -e '.[worker,gpu]' "
    "'torch==<the installed version>'), or `make gpu-wheels` for `make gpu-check`"
)


# ---- copies ------------------------------------------------------------------------------------------


def upload(arr: np.ndarray, device: str | torch.device, *, pinned: bool = True) -> torch.Tensor:
    """``arr`` (e.g. a (B, H, W, C) uint8 batch) as a tensor of the same shape and dtype on ``device``.

    On the CPU the tensor shares ``arr``'s memory (a copy only when ``arr`` is read-only or strided).
    On CUDA the array is copied into pinned host memory and from there with ``non_blocking=True`` on the
    current stream: the call returns before the copy ends, and work queued after it on that stream sees
    the data. ``pinned=False`` copies from pageable memory instead (for measuring the difference)."""
    device = torch.device(device)
    if not (arr.flags.writeable and arr.flags.c_contiguous):
        arr = np.array(arr, order="C")  # from_numpy needs positive strides and warns on read-only data
    if device.type != "cuda":
        t = torch.from_numpy(arr)
        return t if device.type == "cpu" else t.to(device)
    if not pinned:
        return torch.from_numpy(arr).to(device)
    src = torch.from_numpy(arr)
    host = torch.empty(src.shape, dtype=src.dtype, pin_memory=True)
    host.copy_(src)  # pageable -> pinned on the host (parallel, without the GIL)
    return host.to(device, non_blocking=True)


def download(x: torch.Tensor, *, pinned: bool = True) -> np.ndarray:
    """``x`` as a host numpy array (same shape and dtype), valid when this returns.

    From CUDA: one copy into pinned memory with ``non_blocking=True``, then the current stream is
    synchronised (not the whole device). The array keeps its pinned block until it is freed.
    ``pinned=False`` copies into pageable memory instead."""
    x = x.detach()
    if x.device.type != "cuda":
        return x.cpu().numpy()
    if not pinned:
        return x.cpu().numpy()
    host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    host.copy_(x, non_blocking=True)
    torch.cuda.current_stream(x.device).synchronize()
    return host.numpy()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> uint8 on the same device (clamped, rounded half to even, as imaging does)."""
    return imaging.levels_255(x).to(torch.uint8)


# ---- streams -----------------------------------------------------------------------------------------

_pools: dict[int, Iterator[Any]] = {}
_pools_lock = threading.Lock()


def _next_stream(device: torch.device) -> Any:
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _pools_lock:
        if index not in _pools:
            streams = [torch.cuda.Stream(device=index) for _ in range(STREAMS_PER_DEVICE)]
            _pools[index] = itertools.cycle(streams)
        return next(_pools[index])


@contextmanager
def batch_stream(device: str | torch.device) -> Iterator[Any]:
    """Run the body on a CUDA stream of its own; yields the stream (None off CUDA: then a no-op).

    On entry the stream waits for work already queued on the caller's current stream (tensors made
    before the block are ready inside it); on exit, error or not, the host waits for the stream, so the
    block's results can be used from any thread or stream and its tensors freed safely."""
    device = torch.device(device)
    if device.type != "cuda":
        yield None
        return
    stream = _next_stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    try:
        with torch.cuda.stream(stream):
            yield stream
    finally:
        stream.synchronize()


# ---- when to take the device path ----------------------------------------------------------------------


def wants_device_decode(source_format: str, mode: str, *, nvjpeg: bool) -> bool:
    """Decode on the device: a JPEG whose pixels need no host-side colour work, when nvJPEG works here.

    CMYK (and anything but RGB or grey) goes through ImageCms on the host. An RGB ICC profile does not
    matter (the pixels are decoded as they are and the profile is carried to the output) and neither
    does EXIF orientation (:func:`orient` applies it on the device)."""
    return nvjpeg and source_format.lower() in ("jpeg", "jpg") and mode in DEVICE_DECODE_MODES


def wants_device_encode(
    output_format: str, quality: int, has_alpha: bool, *, size_capped: bool = False, nvjpeg: bool
) -> bool:
    """Encode on the device: JPEG output at a quality where the CPU also writes 4:4:4 chroma, with no
    alpha to flatten and no byte cap (``encode_within`` bisects the quality on the host)."""
    return (
        nvjpeg
        and output_format.lower() in ("jpeg", "jpg")
        and quality >= DEVICE_JPEG_MIN_QUALITY
        and not has_alpha
        and not size_capped
    )


# ---- nvJPEG availability -------------------------------------------------------------------------------


@functools.cache
def torchvision_io() -> tuple[Any, str]:
    """``(torchvision.io, "")``, or ``(None, why not)``. Imported here only, once per process."""
    try:
        from torchvision import io as tvio
    except ImportError as exc:
        return None, f"torchvision is not installed ({exc}); {INSTALL_HINT}"
    except Exception as exc:  # noqa: BLE001 - a torchvision built for another torch raises RuntimeError
        return None, (f"torchvision does not import beside torch {torch.__version__} "
                      f"({type(exc).__name__}: {exc}); its build must match torch's")
    if not hasattr(tvio, "decode_jpeg") or not hasattr(tvio, "encode_jpeg"):
        return None, "this torchvision has no decode_jpeg/encode_jpeg (the gpu extra wants 0.24 or later)"
    return tvio, ""


def jpeg_on_device_status(device: str | torch.device) -> tuple[bool, str]:
    """Whether JPEG can be coded on ``device`` here, and why (or why not). Cached per device; the
    answer is logged once at INFO."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    return _status(str(device))


@functools.cache
def _status(device_name: str) -> tuple[bool, str]:
    device = torch.device(device_name)
    ok, why = _check(device)
    if ok:
        log.info("JPEG decode and encode on %s through nvJPEG (%s)", device_name, why)
    else:
        log.info("JPEG stays on the host for %s: %s", device_name, why)
    return ok, why


def _check(device: torch.device) -> tuple[bool, str]:
    tvio, why = torchvision_io()
    if device.type != "cuda":
        return False, f"the device is {device.type}; nvJPEG needs CUDA" + (f" (and {why})" if why else "")
    if tvio is None:
        return False, why
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA device"
    try:
        worst = _probe(device)
    except Exception as exc:  # noqa: BLE001 - any failure means: use the host path
        return False, f"nvJPEG failed on a probe image ({type(exc).__name__}: {exc})"
    import torchvision

    return True, f"torchvision {torchvision.__version__}, probe max |Δ| {worst} levels against Pillow"


def _probe(device: torch.device) -> int:
    """Decode and encode a small 4:4:4 JPEG on the device; the worst level difference from Pillow."""
    from PIL import Image

    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([xx * 5, yy * 7, (xx + yy) * 3], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=0)
    data = buf.getvalue()
    (decoded,) = decode_jpeg_device([data], device)
    again = Image.open(io.BytesIO(encode_jpeg_device(decoded, 95)))
    again.load()  # the device's file reads back
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return int(np.abs(decoded.permute(1, 2, 0).cpu().numpy().astype(np.int16) - pillow).max())


def jpeg_on_device_available(device: str | torch.device) -> bool:
    """True when JPEG is decoded and encoded on ``device`` (see :func:`jpeg_on_device_status`)."""
    return jpeg_on_device_status(device)[0]


# ---- nvJPEG -----------------------------------------------------------------------------------------


def orient(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """``(..., H, W)`` with the EXIF orientation applied as ``PIL.ImageOps.exif_transpose`` applies it
    (1 and values outside 2-8: unchanged). Contiguous out."""
    if orientation == 2:  # mirrored left-right
        x = x.flip(-1)
    elif orientation == 3:  # rotated 180°
        x = x.flip(-2, -1)
    elif orientation == 4:  # mirrored top-bottom
        x = x.flip(-2)
    elif orientation == 5:  # transposed (main diagonal)
        x = x.transpose(-2, -1)
    elif orientation == 6:  # Pillow's ROTATE_270: 90° clockwise
        x = x.transpose(-2, -1).flip(-1)
    elif orientation == 7:  # transversed (anti-diagonal)
        x = x.transpose(-2, -1).flip(-2, -1)
    elif orientation == 8:  # Pillow's ROTATE_90: 90° counter-clockwise
        x = x.transpose(-2, -1).flip(-2)
    return x.contiguous()


def decode_jpeg_device(
    datas: Sequence[bytes], device: str | torch.device, orientations: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """JPEG files -> one ``(3, H, W)`` uint8 RGB tensor each on ``device``, EXIF ``orientations``
    applied (default: none), ready for any stream when this returns. One batched nvJPEG call on CUDA
    (torchvision's libjpeg-turbo decoder elsewhere). Raises if any file fails (no partial results)."""
    tvio, why = torchvision_io()
    if tvio is None:
        raise RuntimeError(why)
    device = torch.device(device)
    inputs = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    with batch_stream(device):
        out = tvio.decode_jpeg(inputs, mode=tvio.ImageReadMode.RGB, device=device)
        return [orient(x, o) for x, o in zip(out, orientations or [1] * len(out), strict=True)]


def encode_jpegs_device(
    images: Sequence[torch.Tensor], quality: int, icc_profiles: Sequence[bytes | None] | None = None
) -> list[bytes]:
    """``(3, H, W)`` uint8 tensors on one device -> JPEG files (4:4:4, baseline), each with its ICC
    profile written as the CPU encoder writes it. One batched nvJPEG call on CUDA."""
    tvio, why = torchvision_io()
    if tvio is None:
        raise RuntimeError(why)
    if not images:
        return []
    inputs, device = [x.contiguous() for x in images], images[0].device
    if device.type == "cuda":  # torchvision's encoder reads the inputs on its own stream, without waiting
        torch.cuda.current_stream(device).synchronize()
    encoded = tvio.encode_jpeg(inputs, quality=int(quality))
    if device.type == "cuda":  # ... and copies each file out on the legacy default stream (0.24-0.29)
        torch.cuda.default_stream(device).synchronize()
    files = [t.cpu().numpy().tobytes() for t in encoded]
    profiles = icc_profiles or [None] * len(files)
    return [imaging.jpeg_with_icc(f, icc) if icc else f for f, icc in zip(files, profiles, strict=True)]


def encode_jpeg_device(x: torch.Tensor, quality: int, icc_profile: bytes | None = None) -> bytes:
    """One ``(3, H, W)`` uint8 tensor -> a JPEG file (see :func:`encode_jpegs_device`)."""
    return encode_jpegs_device([x], quality, [icc_profile])[0]


# ---- whole images -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DeviceImage:
    """A JPEG decoded on the device: ``rgb`` is ``(3, H, W)`` uint8 there, orientation applied. Carries
    the fields of worker.imaging.DecodedImage that the pipelines read besides the pixels."""

    rgb: torch.Tensor
    icc_profile: bytes | None
    width: int
    height: int
    source_format: str = "jpeg"
    alpha: None = None
    bit_depth: int = 8


@dataclass(frozen=True)
class JpegHeader:
    """What the decision and the device decoder need, read from the header (caps already checked)."""

    source_format: str
    mode: str
    orientation: int
    icc_profile: bytes | None
    width: int  # as stored, before orientation
    height: int


def read_header(data: bytes, limits: ImageLimits) -> JpegHeader:
    """Format, mode, EXIF orientation and RGB ICC profile from the header, through
    darkroom.acceptance.open_checked (every cap is checked before any pixel is decoded)."""
    im, info = open_checked(data, limits)
    with im:
        try:
            orientation = int(im.getexif().get(_ORIENTATION_TAG, 1))
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - imaging ignores a broken EXIF block too
            log.debug("ignoring unreadable EXIF orientation: %s", exc)
            orientation = 1
        icc = im.info.get("icc_profile")
        rgb_icc = icc if isinstance(icc, bytes) and len(icc) >= 20 and icc[16:20] == b"RGB " else None
        return JpegHeader(info.format, im.mode, orientation, rgb_icc, info.width, info.height)


def decode_on_device(data: bytes, limits: ImageLimits, device: str | torch.device) -> DeviceImage | None:
    """The image decoded on ``device`` when :func:`wants_device_decode` says so; None means: decode it
    with worker.imaging.decode (also when nvJPEG rejects the file, e.g. an arithmetic-coded JPEG).
    Invalid input raises as imaging.decode would (the header is checked first)."""
    if not jpeg_on_device_available(device):
        return None
    head = read_header(data, limits)
    if not wants_device_decode(head.source_format, head.mode, nvjpeg=True):
        return None
    try:
        (rgb,) = decode_jpeg_device([data], device, [head.orientation])
    except Exception as exc:  # noqa: BLE001 - the host decoder decides what is wrong with the file
        log.info("nvJPEG could not decode this %s JPEG (%s); decoding on the host", head.mode, exc)
        return None
    return DeviceImage(rgb, head.icc_profile, rgb.shape[2], rgb.shape[1], head.source_format)


def encode_on_device(
    rgb: torch.Tensor, icc_profile: bytes | None, output_format: str, quality: int,
    *, has_alpha: bool = False, size_capped: bool = False,
) -> bytes | None:
    """JPEG bytes encoded where ``rgb`` ((3, H, W) uint8) lives, or None when the host encoder should
    run instead (not wanted, or nvJPEG failed: logged)."""
    wanted = wants_device_encode(output_format, quality, has_alpha, size_capped=size_capped,
                                 nvjpeg=jpeg_on_device_available(rgb.device))
    if not wanted:
        return None
    try:
        return encode_jpeg_device(rgb, quality, icc_profile)
    except Exception as exc:  # noqa: BLE001 - the host encoder is always there
        log.warning("nvJPEG could not encode a %s image (%s); encoding on the host", tuple(rgb.shape), exc)
        return None


def device_images_to_float(images: Sequence[DeviceImage]) -> torch.Tensor:
    """``(B, 3, H, W)`` float32 in [0, 1] from device-decoded images (one size)."""
    return torch.stack([im.rgb for im in images]).to(torch.float32).div_(255.0)
