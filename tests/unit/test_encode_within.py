"""``imaging.encode_within``: a byte cap met by a lower lossy quality (not below 40) or a harder PNG
compression, else OutputTooLarge with the smallest size reached; AVIF output that decodes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter, features

from darkroom.errors import InvalidInput, OutputTooLarge
from worker.imaging import MIN_SHRINK_QUALITY, PNG_LEVELS, encode, encode_within

needs_avif = pytest.mark.skipif(not features.check("avif"), reason="this Pillow cannot write AVIF")


def photo(h: int = 128, w: int = 128, channels: int = 3) -> np.ndarray:
    """Blurred noise: sizes that fall steadily with the quality."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    blurred = np.asarray(Image.fromarray(pixels, "RGBA").filter(ImageFilter.GaussianBlur(1.5)))
    return np.ascontiguousarray(blurred[..., :channels])


def noise(h: int = 128, w: int = 128) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)


def repeats() -> np.ndarray:
    """Rows of one random tile, each shifted: only a long match search finds the repeats, so PNG
    levels 1, 6 and 9 give clearly different sizes."""
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 2, (8, 128, 3)).astype(np.uint8) * 255
    rows = [np.roll(tile, int(shift), axis=1) for shift in rng.integers(0, 128, 32)]
    return np.ascontiguousarray(np.concatenate(rows))


def size(rgb: np.ndarray, fmt: str, quality: int, alpha: np.ndarray | None = None, **kw) -> int:
    return len(encode(rgb, alpha, None, fmt, quality, **kw).data)


def quality_of(data: bytes, rgb: np.ndarray, fmt: str, qualities: range) -> int:
    """The quality whose encoding is ``data`` byte for byte (encoders are deterministic)."""
    found = [q for q in qualities if encode(rgb, None, None, fmt, q).data == data]
    assert found, "the result is no encoding at any quality in range"
    return found[-1]


def decoded(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# --- no cap, or under it --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_without_a_cap_it_is_encode(fmt):
    rgb = photo(64, 64)
    assert encode_within(rgb, None, None, fmt, 85, None) == encode(rgb, None, None, fmt, 85)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_under_the_cap_nothing_changes(fmt):
    rgb = photo(64, 64)
    first = encode(rgb, None, None, fmt, 85)
    assert encode_within(rgb, None, None, fmt, 85, len(first.data)) == first


# --- lossy: quality bisected down ------------------------------------------------------------------


def test_jpeg_gets_the_highest_quality_that_fits():
    rgb = photo()
    qualities = range(MIN_SHRINK_QUALITY, 96)
    sizes = [size(rgb, "jpeg", q) for q in qualities]
    assert sizes == sorted(sizes)  # this image's sizes rise with the quality, so "highest" is well defined
    cap = (sizes[0] + sizes[-1]) // 2
    out = encode_within(rgb, None, None, "jpeg", 95, cap)
    q = quality_of(out.data, rgb, "jpeg", qualities)
    assert len(out.data) <= cap < size(rgb, "jpeg", q + 1)
    assert MIN_SHRINK_QUALITY < q < 95
    assert (out.content_type, out.extension, out.width, out.height) == ("image/jpeg", "jpg", 128, 128)


def test_jpeg_goes_down_to_quality_40_exactly():
    rgb = photo()
    cap = size(rgb, "jpeg", MIN_SHRINK_QUALITY)
    out = encode_within(rgb, None, None, "jpeg", 90, cap)
    assert out == encode(rgb, None, None, "jpeg", MIN_SHRINK_QUALITY)


@pytest.mark.parametrize("fmt", ["webp", pytest.param("avif", marks=needs_avif)])
def test_other_lossy_formats_fit_at_40_or_more(fmt):
    rgb = photo(96, 96)
    cap = (size(rgb, fmt, MIN_SHRINK_QUALITY) + size(rgb, fmt, 90)) // 2
    out = encode_within(rgb, None, None, fmt, 90, cap)
    q = quality_of(out.data, rgb, fmt, range(MIN_SHRINK_QUALITY, 90))
    assert len(out.data) <= cap and MIN_SHRINK_QUALITY <= q < 90
    assert decoded(out.data).size == (96, 96)


def test_jpeg_with_alpha_is_flattened_and_still_fits():
    rgba = photo(channels=4)
    rgb, alpha = np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].copy()
    cap = (size(rgb, "jpeg", 40, alpha) + size(rgb, "jpeg", 95, alpha)) // 2
    out = encode_within(rgb, alpha, None, "jpeg", 95, cap)
    assert len(out.data) <= cap
    assert decoded(out.data).mode == "RGB"


def test_lossy_too_large_names_the_size_at_quality_40():
    rgb = noise()
    smallest = size(rgb, "jpeg", MIN_SHRINK_QUALITY)
    with pytest.raises(OutputTooLarge) as info:
        encode_within(rgb, None, None, "jpeg", 90, 2048)
    message = str(info.value)
    assert f"the jpeg output is {smallest:,} bytes at quality 40, over max_bytes (2,048)" in message
    assert "allow more bytes, make the image smaller or choose another format" in message
    assert isinstance(info.value, InvalidInput)
    assert info.value.code == "output_too_large"


def test_too_large_at_a_quality_below_40_names_that_quality():
    rgb = noise()
    with pytest.raises(OutputTooLarge) as info:
        encode_within(rgb, None, None, "jpeg", 30, 2048)
    assert f"{size(rgb, 'jpeg', 30):,} bytes at quality 30" in str(info.value)


# --- png: compression raised ----------------------------------------------------------------------


def test_png_levels_are_six_then_nine():
    assert PNG_LEVELS == (6, 9)


@pytest.mark.parametrize("level", PNG_LEVELS)
def test_png_is_compressed_harder_until_it_fits(level):
    rgb = repeats()
    by_level = {lv: size(rgb, "png", 90, png_level=lv) for lv in (1, 6, 9)}
    assert by_level[1] > by_level[6] > by_level[9]
    cap = by_level[level]
    out = encode_within(rgb, None, None, "png", 90, cap)
    assert out == encode(rgb, None, None, "png", 90, png_level=level)
    assert np.array_equal(np.asarray(decoded(out.data)), rgb)  # lossless whatever the level


def test_png_with_alpha_keeps_it_when_compressed():
    rgb = repeats()
    alpha = np.full(rgb.shape[:2], 200, dtype=np.uint8)
    cap = size(rgb, "png", 90, alpha, png_level=9)
    out = encode_within(rgb, alpha, None, "png", 90, cap)
    im = decoded(out.data)
    assert im.mode == "RGBA" and np.array_equal(np.asarray(im)[..., 3], alpha)


def test_png_too_large_names_the_smallest_size():
    rgb = noise()
    smallest = min(size(rgb, "png", 90, png_level=lv) for lv in (1, 6, 9))
    with pytest.raises(OutputTooLarge) as info:
        encode_within(rgb, None, None, "png", 90, 10_000)
    assert f"the png output is {smallest:,} bytes at compression level 9, over max_bytes (10,000)" in str(
        info.value
    )


# --- avif -----------------------------------------------------------------------------------------


@needs_avif
def test_avif_output_decodes():
    rgb = photo(96, 80)
    out = encode(rgb, None, None, "avif", 90)
    assert (out.content_type, out.extension, out.width, out.height) == ("image/avif", "avif", 80, 96)
    im = decoded(out.data)
    assert (im.format, im.size) == ("AVIF", (80, 96))
    diff = np.abs(np.asarray(im.convert("RGB")).astype(int) - rgb)
    assert diff.mean() < 4  # lossy: measured 2.6 at quality 90


@needs_avif
def test_avif_keeps_alpha():
    rgba = photo(64, 64, channels=4)
    out = encode(np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].copy(), None, "avif", 90)
    im = decoded(out.data)
    assert im.mode == "RGBA"
    assert np.abs(np.asarray(im)[..., 3].astype(int) - rgba[..., 3]).mean() < 2  # measured 0.6
