"""imaging.decode reads plain 8-bit RGB(A) PNGs through OpenCV (it releases the GIL) and every other PNG
through Pillow: both paths must give exactly Pillow's pixels, alpha and ICC profile."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from darkroom.acceptance import ImageLimits
from worker import imaging

LIMITS = ImageLimits(max_bytes=50_000_000, max_pixels=50_000_000, max_side_px=20_000)


def _png(mode: str, size=(37, 23), **save) -> bytes:
    rng = np.random.default_rng(len(mode) + size[0])
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    if channels:
        im = Image.fromarray((rng.random((size[1], size[0], channels)) * 255).astype(np.uint8), mode)
    else:
        im = Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG", **save)
    return buf.getvalue()


def _pillow(data: bytes) -> imaging.DecodedImage:
    """What the Pillow path decodes (the fast path switched off by giving it no plain file)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        frame = imaging._apply_orientation(im)
        rgb, alpha, icc = imaging._to_arrays(frame)
    return imaging.DecodedImage(rgb, alpha, icc, rgb.shape[1], rgb.shape[0], "png")


def _same(a: imaging.DecodedImage, b: imaging.DecodedImage) -> None:
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert (a.alpha is None) == (b.alpha is None)
    if a.alpha is not None:
        np.testing.assert_array_equal(a.alpha, b.alpha)
    assert a.icc_profile == b.icc_profile
    assert a.rgb.flags.c_contiguous and a.rgb.flags.writeable


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (37, 23), (300, 7)])
def test_plain_png_goes_through_opencv_with_pillows_pixels(mode: str, size) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for save in ({}, {"icc_profile": icc}, {"compress_level": 9}):
        data = _png(mode, size, **save)
        assert imaging._plain_png(data)
        assert imaging._decode_plain_png(data) is not None
        _same(imaging.decode(data, LIMITS), _pillow(data))


def _with_exif_orientation(data: bytes, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    with Image.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.save(buf, format="PNG", exif=exif.tobytes())
    return buf.getvalue()


def _with_text(data: bytes, key: str, value: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    with Image.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _animated() -> bytes:
    frames = [Image.new("RGB", (9, 5), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    return buf.getvalue()


@pytest.mark.parametrize("name,data", [
    ("exif orientation 6", _with_exif_orientation(_png("RGB"), 6)),
    ("colour-key transparency", _png("RGB", transparency=(10, 20, 30))),
    ("palette", _png("P")),
    ("grey", _png("L")),
    ("grey + alpha", _png("LA")),
    ("16-bit grey", _png("I;16")),
    ("animated", _animated()),
])
def test_other_pngs_take_pillows_path(name: str, data: bytes) -> None:
    assert not imaging._plain_png(data), name
    _same(imaging.decode(data, LIMITS), _pillow(data))


def test_an_exif_text_chunk_keeps_the_file_on_pillows_path() -> None:
    data = _with_text(_png("RGB"), "Raw profile type exif", "exif\n 6\n457869660000")
    assert not imaging._plain_png(data)
    assert imaging._plain_png(_with_text(_png("RGB"), "Comment", "hello"))


def test_a_file_cut_short_is_left_to_pillow_which_refuses_it() -> None:
    data = _png("RGB", (64, 64), compress_level=0)
    cut = data[: len(data) // 2]
    assert not imaging._plain_png(cut)
    with pytest.raises(imaging.UnsupportedImage):
        imaging.decode(cut, LIMITS)
