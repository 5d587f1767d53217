"""worker/device_io.py: the host side of every device path runs here on the CPU (copies, streams, the
decisions, EXIF orientation, ICC segments, the fallbacks without torchvision); the CUDA and nvJPEG paths
are marked ``gpu`` and run where torch sees a CUDA device (`make gpu-check` measures them)."""

from __future__ import annotations

import importlib.util
import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from darkroom.acceptance import ImageLimits
from darkroom.errors import InternalError, InvalidInput
from worker import device_io, imaging

pytestmark = pytest.mark.timeout(60)
LIMITS = ImageLimits()
CPU = torch.device("cpu")
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def needs_cuda(test):
    """Marked ``gpu`` and skipped where torch sees no CUDA device."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(test))


def photo(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth (H, W, 3) uint8 image with some texture (JPEG-friendly, asymmetric in both axes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 180, (xx + 2 * yy) / (width + 2 * height) * 220], -1)
    return np.clip(base + rng.normal(0, 6, base.shape) + 20, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, orientation: int = 1, subsampling: int = 0, icc: bytes | None = None,
         mode: str = "RGB") -> bytes:
    im = Image.fromarray(rgb).convert(mode)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    opts = {"icc_profile": icc} if icc else {}
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, subsampling=subsampling, exif=exif.tobytes(), **opts)
    return buf.getvalue()


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ---- copies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_upload_download_round_trip_on_cpu(dtype):
    arr = (np.arange(2 * 5 * 7 * 3) % 251).astype(dtype).reshape(2, 5, 7, 3)
    t = device_io.upload(arr, "cpu")
    assert t.shape == arr.shape and t.device == CPU
    assert t.data_ptr() == arr.ctypes.data  # the CPU path shares the array, no copy
    np.testing.assert_array_equal(device_io.download(t), arr)


def test_upload_copies_read_only_and_strided_arrays():
    arr = photo()[None]
    view = arr[:, ::2, ::-1]  # negative strides: torch.from_numpy refuses these
    frozen = arr.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(device_io.upload(view, CPU).numpy(), view)
    np.testing.assert_array_equal(device_io.upload(frozen, CPU).numpy(), frozen)


def test_to_uint8_rounds_as_imaging_does():
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    ours = device_io.to_uint8(x).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, np.stack(imaging.from_tensor(x)))


def test_device_images_to_float_matches_imaging_to_tensor():
    pixels = [photo(seed=s) for s in (1, 2)]
    decoded = [imaging.DecodedImage(p, None, None, 64, 48, "jpeg") for p in pixels]
    on_device = [device_io.DeviceImage(torch.from_numpy(p).permute(2, 0, 1), None, 64, 48) for p in pixels]
    assert torch.equal(device_io.device_images_to_float(on_device), imaging.to_tensor(decoded, CPU))


# ---- streams -----------------------------------------------------------------------------------------


def test_batch_stream_on_cpu_runs_the_body_and_yields_no_stream():
    ran = []
    with device_io.batch_stream(CPU) as stream:
        ran.append(torch.ones(3).sum().item())
    assert stream is None and ran == [3.0]
    with pytest.raises(ZeroDivisionError), device_io.batch_stream("cpu"):
        1 / 0  # noqa: B018 - the body's error comes out unchanged


# ---- decisions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_format", "mode", "nvjpeg", "expected"),
    [
        ("jpeg", "RGB", True, True),
        ("JPEG", "RGB", True, True),
        ("jpeg", "L", True, True),  # grey: nvJPEG's RGB output repeats it, as Pillow's convert does
        ("jpeg", "CMYK", True, False),  # colour-managed on the host (ImageCms)
        ("png", "RGB", True, False),
        ("webp", "RGB", True, False),
        ("jpeg", "RGB", False, False),  # no working nvJPEG here
    ],
)
def test_wants_device_decode(source_format, mode, nvjpeg, expected):
    assert device_io.wants_device_decode(source_format, mode, nvjpeg=nvjpeg) is expected


@pytest.mark.parametrize(
    ("fmt", "quality", "alpha", "capped", "nvjpeg", "expected"),
    [
        ("jpeg", 95, False, False, True, True),
        ("jpg", 90, False, False, True, True),
        ("jpeg", 89, False, False, True, False),  # the CPU writes 4:2:0 here; nvJPEG only 4:4:4
        ("jpeg", 95, True, False, True, False),  # alpha is flattened onto white on the host
        ("jpeg", 95, False, True, True, False),  # a byte cap bisects the quality on the host
        ("png", 95, False, False, True, False),
        ("webp", 95, False, False, True, False),
        ("jpeg", 95, False, False, False, False),
    ],
)
def test_wants_device_encode(fmt, quality, alpha, capped, nvjpeg, expected):
    got = device_io.wants_device_encode(fmt, quality, alpha, size_capped=capped, nvjpeg=nvjpeg)
    assert got is expected


# ---- orientation and headers ----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 10))
def test_orient_matches_pillow_exif_transpose(orientation):
    rgb = photo(5, 7)
    im = Image.fromarray(rgb)
    im.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(im))
    ours = device_io.orient(torch.from_numpy(rgb).permute(2, 0, 1), orientation).permute(1, 2, 0)
    np.testing.assert_array_equal(ours.numpy(), expected)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_header_orientation_then_orient_equals_imaging_decode(orientation):
    """The device path's two halves on the host: the header's tag, applied by orient() to the stored
    pixels, gives what imaging.decode gives (same decoder underneath, so exactly)."""
    data = jpeg(photo(), orientation)
    head = device_io.read_header(data, LIMITS)
    assert (head.source_format, head.mode, head.orientation) == ("jpeg", "RGB", orientation)
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # Pillow ignores the tag here
    ours = device_io.orient(torch.from_numpy(stored.copy()).permute(2, 0, 1), head.orientation)
    np.testing.assert_array_equal(ours.permute(1, 2, 0).numpy(), imaging.decode(data, LIMITS).rgb)


def test_read_header_keeps_rgb_profiles_and_names_cmyk():
    icc = srgb_profile()
    head = device_io.read_header(jpeg(photo(), icc=icc), LIMITS)
    assert head.icc_profile == icc and (head.width, head.height) == (64, 48)
    cmyk = device_io.read_header(jpeg(photo(), mode="CMYK"), LIMITS)
    assert cmyk.mode == "CMYK"
    assert not device_io.wants_device_decode(cmyk.source_format, cmyk.mode, nvjpeg=True)


def test_read_header_checks_the_caps_first():
    with pytest.raises(InvalidInput, match="pixels"):
        device_io.read_header(jpeg(photo()), ImageLimits(max_pixels=1000))


# ---- ICC segments ------------------------------------------------------------------------------------


def test_jpeg_with_icc_is_read_back_by_pillow():
    plain = jpeg(photo())
    assert "icc_profile" not in Image.open(io.BytesIO(plain)).info
    icc = srgb_profile()
    tagged = imaging.jpeg_with_icc(plain, icc)
    im = Image.open(io.BytesIO(tagged))
    assert im.info["icc_profile"] == icc
    np.testing.assert_array_equal(np.asarray(im), np.asarray(Image.open(io.BytesIO(plain))))


def test_jpeg_with_icc_splits_large_profiles_and_needs_no_jfif_segment():
    plain = jpeg(photo())
    assert plain[2:4] == b"\xff\xe0"
    bare = plain[:2] + plain[4 + int.from_bytes(plain[4:6], "big"):]  # SOI, then straight to the tables
    icc = srgb_profile()
    big = icc + bytes(range(256)) * 600  # 150 kB: three APP2 segments
    for data in (plain, bare):
        assert Image.open(io.BytesIO(imaging.jpeg_with_icc(data, big))).info["icc_profile"] == big
    with pytest.raises(InternalError, match="no SOI"):
        imaging.jpeg_with_icc(b"\x89PNG\r\n\x1a\n", icc)


# ---- without nvJPEG ----------------------------------------------------------------------------------


def test_on_the_cpu_jpeg_stays_on_the_host_and_says_why(caplog):
    device_io._status.cache_clear()
    with caplog.at_level(logging.INFO, logger="worker.device_io"):
        ok, why = device_io.jpeg_on_device_status(CPU)
        assert not device_io.jpeg_on_device_available("cpu")
    assert not ok and "needs CUDA" in why
    assert [r.getMessage() for r in caplog.records].count(f"JPEG stays on the host for cpu: {why}") == 1
    data = jpeg(photo())
    assert device_io.decode_on_device(data, LIMITS, CPU) is None
    assert device_io.encode_on_device(torch.zeros(3, 8, 8, dtype=torch.uint8), None, "jpeg", 95) is None


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed here")
def test_without_torchvision_nvjpeg_is_off_with_the_install_hint():
    tvio, why = device_io.torchvision_io()
    assert tvio is None and "torchvision is not installed" in why and "gpu extra" in why
    if not torch.cuda.is_available():  # a CUDA device is not consulted before torchvision imports
        ok, reason = device_io.jpeg_on_device_status(torch.device("cuda"))
        assert not ok and reason == why
    with pytest.raises(RuntimeError, match="torchvision is not installed"):
        device_io.decode_jpeg_device([jpeg(photo())], CPU)
    with pytest.raises(RuntimeError, match="torchvision is not installed"):
        device_io.encode_jpeg_device(torch.zeros(3, 8, 8, dtype=torch.uint8), 95)


# ---- CUDA ----------------------------------------------------------------------------------------------


def nvjpeg_device() -> torch.device:
    device = torch.device("cuda", torch.cuda.current_device())
    ok, why = device_io.jpeg_on_device_status(device)
    if not ok:
        pytest.skip(why)
    return device


def levels(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float(d.mean())


@needs_cuda
@pytest.mark.parametrize("pinned", [True, False])
def test_cuda_round_trip(pinned):
    arr = (np.arange(4 * 256 * 256 * 3) % 253).astype(np.uint8).reshape(4, 256, 256, 3)
    t = device_io.upload(arr, "cuda", pinned=pinned)
    assert t.is_cuda and t.dtype == torch.uint8 and t.shape == arr.shape
    total = t.sum(dtype=torch.int64).item()  # queued behind the non-blocking copy on the same stream
    assert total == int(arr.sum(dtype=np.int64))
    back = device_io.download(t.flip(0), pinned=pinned)
    np.testing.assert_array_equal(back, arr[::-1])


@needs_cuda
def test_cuda_batch_stream_runs_off_the_default_stream():
    device = torch.device("cuda", torch.cuda.current_device())
    before = torch.ones(1024, 1024, device=device)
    with device_io.batch_stream(device) as stream:
        assert stream is not None and torch.cuda.current_stream(device) == stream
        assert stream != torch.cuda.default_stream(device)
        y = device_io.upload(photo(512, 512)[None], device).float().sum() + before.sum()
    assert stream.query()  # synchronised on exit
    assert torch.cuda.current_stream(device) == torch.cuda.default_stream(device)
    assert y.item() == pytest.approx(float(photo(512, 512).sum()) + 1024 * 1024)


@needs_cuda
@pytest.mark.parametrize("subsampling", [0, 2])
def test_nvjpeg_decode_agrees_with_pillow(subsampling):
    device = nvjpeg_device()
    datas = [jpeg(photo(480, 640, seed=s), subsampling=subsampling) for s in range(3)]
    decoded = device_io.decode_jpeg_device(datas, device)
    for data, x in zip(datas, decoded, strict=True):
        assert x.device == device and x.dtype == torch.uint8 and x.shape == (3, 480, 640)
        worst, mean = levels(x.permute(1, 2, 0).cpu().numpy(), imaging.decode(data, LIMITS).rgb)
        if subsampling == 0:
            assert worst <= device_io.JPEG_DECODE_MAX_LEVELS_444
            assert mean <= device_io.JPEG_DECODE_MEAN_LEVELS_444
        else:
            assert mean <= device_io.JPEG_DECODE_MEAN_LEVELS_420


@needs_cuda
@pytest.mark.parametrize("orientation", [1, 6, 7])
def test_decode_on_device_applies_orientation_and_keeps_the_profile(orientation):
    device = nvjpeg_device()
    icc = srgb_profile()
    data = jpeg(photo(), orientation, icc=icc)
    image = device_io.decode_on_device(data, LIMITS, device)
    reference = imaging.decode(data, LIMITS)
    assert isinstance(image, device_io.DeviceImage) and image.icc_profile == icc
    assert (image.width, image.height) == (reference.width, reference.height)
    worst, _ = levels(image.rgb.permute(1, 2, 0).cpu().numpy(), reference.rgb)
    assert worst <= device_io.JPEG_DECODE_MAX_LEVELS_444
    assert device_io.decode_on_device(jpeg(photo(), mode="CMYK"), LIMITS, device) is None


@needs_cuda
def test_nvjpeg_encode_reads_back_in_pillow_with_its_profile():
    device = nvjpeg_device()
    rgb = photo(256, 320)
    x = torch.from_numpy(rgb).permute(2, 0, 1).contiguous().to(device)
    icc = srgb_profile()
    data = device_io.encode_on_device(x, icc, "jpeg", 95)
    assert data is not None and device_io.encode_on_device(x, icc, "jpeg", 80) is None
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG" and im.size == (320, 256) and im.info["icc_profile"] == icc
    ours, _ = levels(np.asarray(im.convert("RGB")), rgb)
    host = imaging.encode(rgb, None, None, "jpeg", 95).data
    theirs, _ = levels(np.asarray(Image.open(io.BytesIO(host)).convert("RGB")), rgb)
    assert ours <= max(2 * theirs, 8)  # the same quality loses about as much as the host encoder


@pytest.mark.skipif(device_io.torchvision_io()[0] is None, reason="torchvision does not import here")
def test_torchvision_codecs_on_the_cpu_through_the_same_functions():
    """Where torchvision imports, the device functions run on the CPU too (libjpeg-turbo inside it)."""
    datas = [jpeg(photo(), 6), jpeg(photo(seed=3))]
    decoded = device_io.decode_jpeg_device(datas, CPU, [6, 1])
    for data, x in zip(datas, decoded, strict=True):
        worst, _ = levels(x.permute(1, 2, 0).numpy(), imaging.decode(data, LIMITS).rgb)
        assert worst <= device_io.JPEG_DECODE_MAX_LEVELS_444
    icc = srgb_profile()
    (data,) = device_io.encode_jpegs_device(decoded[:1], 95, [icc])
    assert Image.open(io.BytesIO(data)).info["icc_profile"] == icc


def test_gpu_check_io_section_runs_the_host_paths_on_the_cpu():
    """`make gpu-check`'s io section at toy sizes: copies and host codecs timed, orientation exact,
    the nvJPEG rows skipped with the reason (the install hint where torchvision is missing)."""
    from benchmarks import gpu_check

    rows, out_of_time = gpu_check.run_sections(gpu_check.Context(CPU, gpu_check.QUICK), ["io"], 60)
    assert not out_of_time and rows and all(r.section == "io" for r in rows)
    by_case = {r.case.split(",")[0]: r for r in rows if "nvJPEG" not in r.case}
    timed = ("upload uint8 128²", "download uint8 128²", "JPEG decode", "JPEG encode")
    for case in timed:
        assert float(by_case[case].ms) >= 0 and by_case[case].status == "info"
    assert "Pillow" in by_case["JPEG decode"].case and "host" in by_case["JPEG encode"].case
    assert by_case["EXIF orientation 6"].status == "PASS" and by_case["EXIF orientation 6"].max_diff == "0"
    skipped = [r for r in rows if "nvJPEG" in r.case]
    assert len(skipped) == 3 and all(r.status == "SKIP" and "needs CUDA" in r.note for r in skipped)
    if not HAS_TORCHVISION:
        assert all("gpu extra" in r.note for r in skipped)
    chains = [r for r in rows if r.case.startswith("chain uint8→uint8")]
    assert len(chains) == 2 and all(float(r.images_s) > 0 for r in chains)
