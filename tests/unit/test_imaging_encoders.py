"""worker.imaging's encoders: each path (OpenCV for PNG and JPEG, Pillow for the rest and as the
fallback) writes pixels that decode back as given, keeps alpha and the RGB ICC profile byte for byte,
and writes no other metadata; encode_within still shrinks output or says why it cannot."""

from __future__ import annotations

import functools
import io
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFilter, features

from darkroom.acceptance import ImageLimits
from darkroom.errors import OutputTooLarge
from worker import imaging
from worker.imaging import decode, encode, encode_within

cv2 = pytest.importorskip("cv2")

needs_avif = pytest.mark.skipif(not features.check("avif"), reason="this Pillow cannot write AVIF")
SIZES = [(1, 1), (1, 7), (5, 3), (17, 31), (64, 48)]
ALLOWED_PNG_CHUNKS = {b"IHDR", b"iCCP", b"IDAT", b"IEND"}


def opencv_path(pixels, fmt, quality, icc, level):
    data = imaging._encode_opencv(cv2, pixels, fmt, quality, icc, level)
    assert data is not None, f"OpenCV took no {fmt}"
    return data


PATHS = {"opencv": opencv_path, "pillow": imaging._encode_pillow}


def photo(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Blurred noise: smooth like a photo, different for every seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    blurred = np.asarray(Image.fromarray(pixels, "RGBA").filter(ImageFilter.GaussianBlur(1.5)))
    return np.array(blurred[..., :channels])  # a writable copy


@functools.cache
def srgb_icc() -> bytes:
    """Made once: LittleCMS stamps each new profile with the time, so two calls can differ."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def big_icc() -> bytes:
    """An RGB profile header and ~150 KB of body: three APP2 segments in a JPEG."""
    head = srgb_icc()[:128]
    return head + np.random.default_rng(5).integers(0, 256, 150_000, dtype=np.uint8).tobytes()


def reopen(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``(type, data)`` of every chunk, each CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        crc = int.from_bytes(data[at + 8 + length : at + 12 + length], "big")
        assert zlib.crc32(kind + body) == crc, f"bad CRC on {kind!r}"
        chunks.append((kind, body))
        at += 12 + length
    return chunks


def jpeg_markers(data: bytes) -> list[int]:
    """The marker bytes of every segment before the scan."""
    assert data[:2] == b"\xff\xd8"
    markers, at = [], 2
    while data[at] == 0xFF and data[at + 1] != 0xDA:
        markers.append(data[at + 1])
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return markers


# --- lossless PNG ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("hw", SIZES)
def test_png_decodes_back_identical(path, channels, hw):
    pixels = photo(*hw, channels, seed=hw[0] * 100 + hw[1])
    data = PATHS[path](pixels, "png", 95, None, imaging.PNG_COMPRESS_LEVEL)
    im = reopen(data)
    assert (im.mode, im.size) == ("RGB" if channels == 3 else "RGBA", (hw[1], hw[0]))
    np.testing.assert_array_equal(np.asarray(im), pixels)


@pytest.mark.parametrize("level", range(10))
def test_every_png_level_is_lossless(level):
    pixels = photo(23, 41, 4, seed=level)
    back = np.asarray(reopen(encode(pixels[..., :3], pixels[..., 3], None, "png", png_level=level).data))
    np.testing.assert_array_equal(back, pixels)


def test_encode_takes_the_opencv_path_for_png_and_jpeg():
    pixels, icc = photo(20, 30), srgb_icc()
    for fmt in ("png", "jpeg"):
        assert encode(pixels, None, icc, fmt, 92).data == opencv_path(pixels, fmt, 92, icc, 1)


@pytest.mark.skipif(not hasattr(cv2, "IMWRITE_PNG_FILTER"), reason="this OpenCV cannot choose PNG filters")
@pytest.mark.parametrize(("level", "sub_only"), [(0, True), (1, True), (3, True), (6, False), (9, False)])
def test_fast_png_levels_use_the_sub_filter(level, sub_only):
    pixels = photo(32, 32)
    pixels[16:] = np.arange(32, dtype=np.uint8)[:, None] * 8  # rows where "up" beats "sub"
    chunks = png_chunks(encode(pixels, png_level=level).data)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    filters = {raw[row * (1 + 32 * 3)] for row in range(32)}
    assert (filters == {1}) is sub_only


def test_png_levels_still_trade_time_for_size():
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 2, (8, 128, 3)).astype(np.uint8) * 255
    rows = [np.roll(tile, int(shift), axis=1) for shift in rng.integers(0, 128, 32)]
    pixels = np.ascontiguousarray(np.concatenate(rows))  # only a long match search finds the repeats
    sizes = [len(encode(pixels, png_level=level).data) for level in (1, *imaging.PNG_LEVELS)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 3


def test_uint16_alpha_is_rounded_to_8_bits_on_every_path():
    alpha = np.array([[0, 128, 257, 32896, 65280, 65535]], dtype=np.uint16)
    rgb = np.zeros((1, 6, 3), np.uint8)
    for fmt in ("png", "webp"):
        back = np.asarray(reopen(encode(rgb, alpha, None, fmt, 100).data))[..., 3]
        np.testing.assert_array_equal(back, [[0, 0, 1, 128, 254, 255]])


def test_16_bit_rgb_is_refused_as_before():
    with pytest.raises(ValueError, match="uint8"):
        encode(np.zeros((4, 4, 3), np.uint16))


# --- JPEG --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", [1, 40, 75, 89, 90, 95, 100])
@pytest.mark.parametrize("hw", SIZES)
def test_jpeg_opencv_writes_pillows_bytes(quality, hw):
    pixels = photo(*hw, seed=quality)
    pillow = imaging._encode_pillow(pixels, "jpeg", quality, None, 1)
    assert opencv_path(pixels, "jpeg", quality, None, 1) == pillow


@pytest.mark.parametrize("icc", [srgb_icc(), big_icc()], ids=["srgb", "150KB"])
def test_jpeg_opencv_writes_pillows_icc_segments(icc):
    pixels = photo(33, 17)
    assert opencv_path(pixels, "jpeg", 90, icc, 1) == imaging._encode_pillow(pixels, "jpeg", 90, icc, 1)


def test_jpeg_flattens_alpha_onto_white():
    rgba = photo(16, 24, 4)
    rgba[..., 3] = 0
    rgba[:, 12:, 3] = 255
    out = encode(np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].copy(), None, "jpeg", 100)
    back = np.asarray(reopen(out.data)).astype(int)
    assert np.abs(back[:, :10] - 255).max() <= 2
    assert np.abs(back[:, 14:] - rgba[:, 14:, :3]).mean() < 2


# --- ICC and metadata --------------------------------------------------------------------------------


FORMATS = ["png", "jpeg", "webp", pytest.param("avif", marks=needs_avif)]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("icc", [srgb_icc(), big_icc(), None], ids=["srgb", "150KB", "none"])
@pytest.mark.parametrize("channels", [3, 4])
def test_icc_profile_kept_byte_for_byte(fmt, icc, channels):
    pixels = photo(19, 26, channels)
    alpha = pixels[..., 3].copy() if channels == 4 else None
    out = encode(np.ascontiguousarray(pixels[..., :3]), alpha, icc, fmt, 90)
    back = reopen(out.data)
    assert back.info.get("icc_profile") == icc
    assert back.mode == ("RGBA" if channels == 4 and fmt != "jpeg" else "RGB")
    if fmt == "avif":
        return  # not an accepted input format: Pillow's reading above is the check
    again = decode(out.data, ImageLimits())
    assert again.icc_profile == icc
    assert (again.alpha is not None) == (channels == 4 and fmt != "jpeg")


@pytest.mark.parametrize("level", [1, 6, 9])
def test_png_icc_chunk_sits_after_ihdr_and_nothing_else_is_written(level):
    icc = srgb_icc()
    chunks = png_chunks(encode(photo(9, 9), None, icc, "png", png_level=level).data)
    kinds = [kind for kind, _ in chunks]
    assert kinds[:2] == [b"IHDR", b"iCCP"] and kinds[-1] == b"IEND"
    assert set(kinds) <= ALLOWED_PNG_CHUNKS
    name, rest = chunks[1][1].split(b"\0", 1)
    assert name == b"ICC Profile" and rest[0] == 0 and zlib.decompress(rest[1:]) == icc


def test_no_exif_xmp_or_comment_reaches_any_output():
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0112] = 6  # orientation: applied on decode, then gone
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>SecretXMP</rdf:Description></x:xmpmeta>'
    buf = io.BytesIO()
    meta = {"exif": exif, "xmp": xmp, "comment": b"SecretNote", "icc_profile": srgb_icc()}
    Image.fromarray(photo(12, 20)).save(buf, "JPEG", **meta)
    img = decode(buf.getvalue(), ImageLimits())
    for fmt in ("png", "jpeg", "webp"):
        data = encode(img.rgb, img.alpha, img.icc_profile, fmt, 90).data
        for secret in (b"SpyCam", b"SecretXMP", b"SecretNote", b"Exif", b"eXIf"):
            assert secret not in data, (fmt, secret)
        back = reopen(data)
        assert not back.getexif() and back.size == (12, 20)
    png = encode(img.rgb, None, img.icc_profile, "png").data
    assert {kind for kind, _ in png_chunks(png)} <= ALLOWED_PNG_CHUNKS
    jpeg = encode(img.rgb, None, img.icc_profile, "jpeg", 90).data
    assert 0xE1 not in jpeg_markers(jpeg) and 0xFE not in jpeg_markers(jpeg)  # no APP1 (EXIF/XMP), no COM


# --- threads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_concurrent_encodes_match_a_serial_one(fmt):
    images = [photo(48, 40, 4, seed=i) for i in range(8)]

    def run(px: np.ndarray) -> bytes:
        return encode(np.ascontiguousarray(px[..., :3]), px[..., 3].copy(), srgb_icc(), fmt, 90).data

    serial = [run(px) for px in images]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(run, images)) == serial


# --- encode_within -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_within_still_shrinks_and_keeps_the_profile(fmt):
    rgba = photo(96, 96, 4)
    rgb, alpha, icc = np.ascontiguousarray(rgba[..., :3]), rgba[..., 3].copy(), srgb_icc()
    first = encode(rgb, alpha, icc, fmt, 95)
    if fmt == "png":
        cap = len(encode(rgb, alpha, icc, fmt, 95, png_level=9).data)
    else:
        cap = len(encode(rgb, alpha, icc, fmt, 60).data)
    assert cap < len(first.data)
    out = encode_within(rgb, alpha, icc, fmt, 95, cap)
    assert len(out.data) <= cap
    back = reopen(out.data)
    assert back.info.get("icc_profile") == icc and back.size == (96, 96)
    if fmt == "png":
        np.testing.assert_array_equal(np.asarray(back), rgba)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_within_raises_output_too_large(fmt):
    rgb = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with pytest.raises(OutputTooLarge) as info:
        encode_within(rgb, None, None, fmt, 90, 1_000)
    assert info.value.code == "output_too_large"
    assert f"the {fmt} output is" in str(info.value) and "over max_bytes (1,000)" in str(info.value)


def test_png_rle_strategy_is_chosen_for_noise_not_for_gradients() -> None:
    rng = np.random.default_rng(5)
    noise = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    yy, xx = np.mgrid[0:96, 0:128]
    gradient = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    assert imaging._rle_suits(noise)
    assert not imaging._rle_suits(gradient)
    for px in (noise, gradient, noise[:1, :1], gradient[:3]):
        data = imaging.encode(px, None, None, "png", 90).data
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), px)
