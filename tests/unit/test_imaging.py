"""worker.imaging: sniffing, caps, decoding, tensors, encoding and data URIs (docs/decisions.md §6-§9)."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile

from darkroom import acceptance
from darkroom.acceptance import ImageLimits, parse_data_uri, probe, sniff
from darkroom.errors import ImageTooLarge, InternalError, InvalidInput, UnsupportedImage
from darkroom.settings import Settings
from worker.imaging import (
    DecodedImage,
    data_uri,
    decode,
    encode,
    from_tensor,
    resize_rgb,
    to_tensor,
)

LIMITS = ImageLimits()
REPO = Path(__file__).resolve().parents[2]


def _rgb(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _reopen(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` RGB pixels (its data is far too short)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# --- formats and round trips -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "kw", "name"),
    [("PNG", {}, "png"), ("BMP", {}, "bmp"), ("TIFF", {}, "tiff"), ("WEBP", {"lossless": True}, "webp")],
)
def test_lossless_formats_round_trip_exactly(fmt, kw, name):
    rgb = _rgb()
    data = _save(Image.fromarray(rgb), fmt, **kw)
    assert sniff(data) == name
    info = probe(data, LIMITS)
    assert (info.format, info.width, info.height, info.frames) == (name, 8, 6, 1)
    img = decode(data, LIMITS)
    assert img.source_format == name and (img.width, img.height) == (8, 6)
    assert img.rgb.dtype == np.uint8 and img.alpha is None
    np.testing.assert_array_equal(img.rgb, rgb)


def test_jpeg_round_trip_is_close():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (200, 40, 90)
    img = decode(_save(Image.fromarray(rgb), "JPEG", quality=95), LIMITS)
    assert img.source_format == "jpeg" and img.rgb.shape == (16, 16, 3)
    assert np.abs(img.rgb.astype(int) - rgb).mean() < 4


def test_animated_gif_decodes_first_frame():
    frames = [Image.new("RGB", (5, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert probe(data, LIMITS).frames == 3
    img = decode(data, LIMITS)
    assert (img.rgb == (255, 0, 0)).all()


def test_animated_webp_decodes_first_frame():
    frames = [Image.new("RGB", (5, 4), c) for c in ((10, 200, 30), (0, 0, 255))]
    data = _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert probe(data, LIMITS).frames == 2
    assert (decode(data, LIMITS).rgb == (10, 200, 30)).all()


def test_multipage_tiff_decodes_first_page():
    pages = [Image.new("RGB", (3, 3), (1, 2, 3)), Image.new("RGB", (7, 7), (9, 9, 9))]
    data = _save(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert probe(data, LIMITS).frames == 2
    img = decode(data, LIMITS)
    assert img.rgb.shape == (3, 3, 3) and (img.rgb == (1, 2, 3)).all()


# --- colour modes ------------------------------------------------------------------------------------


def test_grey_becomes_rgb():
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    img = decode(_save(Image.fromarray(grey), "PNG"), LIMITS)
    assert img.alpha is None
    for c in range(3):
        np.testing.assert_array_equal(img.rgb[..., c], grey)


def test_la_keeps_alpha():
    grey, alpha = _rgb()[..., 0], _rgb(seed=1)[..., 0]
    img = decode(_save(Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)]), "PNG"), LIMITS)
    np.testing.assert_array_equal(img.rgb[..., 1], grey)
    np.testing.assert_array_equal(img.alpha, alpha)


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (4, 2))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((1, 1), 1)
    plain = decode(_save(pal, "PNG"), LIMITS)
    assert (
        plain.alpha is None
        and tuple(plain.rgb[1, 1]) == (0, 0, 255)
        and tuple(plain.rgb[0, 0]) == (255, 0, 0)
    )
    clear = decode(_save(pal, "PNG", transparency=0), LIMITS)
    assert clear.alpha is not None and clear.alpha[0, 0] == 0 and clear.alpha[1, 1] == 255
    gif = decode(_save(pal, "GIF", transparency=0), LIMITS)
    assert gif.alpha is not None and gif.alpha[0, 0] == 0 and gif.alpha[1, 1] == 255


def test_16bit_grey_keeps_precision_into_the_tensor():
    values = np.array([[0, 1, 256, 1000], [1001, 30000, 65534, 65535]], dtype=np.uint16)
    data = _save(Image.fromarray(values), "PNG")
    assert probe(data, LIMITS).mode == "I;16"
    img = decode(data, LIMITS)
    assert img.rgb.dtype == np.uint16 and img.bit_depth == 16
    x = to_tensor([img])
    expected = torch.from_numpy(values.astype(np.float32) / 65535.0)
    for c in range(3):
        torch.testing.assert_close(x[0, c], expected, rtol=0, atol=1e-7)
    assert x[0, 0, 0, 3] != x[0, 0, 1, 0]  # 1000 vs 1001: lost in 8 bits, kept here


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [("I", [-5, 70000, 300], [0, 65535, 300]), ("F", [-1.0, 0.5, 2.0], [0, 32768, 65535])],
)
def test_32bit_tiff_maps_to_uint16(mode, values, expected):
    im = Image.fromarray(np.array([values], dtype=np.int32 if mode == "I" else np.float32))
    assert im.mode == mode
    img = decode(_save(im, "TIFF"), LIMITS)
    np.testing.assert_array_equal(img.rgb[0, :, 0], expected)


def test_cmyk_jpeg_becomes_rgb():
    data = _save(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95)
    assert probe(data, LIMITS).mode == "CMYK"
    img = decode(data, LIMITS)
    assert img.rgb.dtype == np.uint8 and img.icc_profile is None
    r, g, b = img.rgb[8, 8].astype(int)
    assert r < 10 and g > 245 and b > 245  # cyan


def test_cmyk_with_unusable_profile_falls_back_and_drops_it(caplog):
    data = _save(Image.new("CMYK", (8, 8), (0, 0, 0, 255)), "JPEG", icc_profile=_srgb_icc())
    img = decode(data, LIMITS)
    assert img.icc_profile is None and img.rgb.max() < 10
    assert "CMYK ICC profile unusable" in caplog.text


def test_exif_orientation_6_rotates_png():
    rgb = np.zeros((2, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    img = decode(_save(Image.fromarray(rgb), "PNG", exif=exif), LIMITS)
    assert img.rgb.shape == (4, 2, 3) and (img.width, img.height) == (2, 4)
    assert tuple(img.rgb[0, 1]) == (255, 0, 0)  # top-left goes top-right (90 degrees clockwise)


def test_exif_orientation_6_rotates_jpeg():
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, :16] = (255, 0, 0)
    rgb[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    img = decode(_save(Image.fromarray(rgb), "JPEG", exif=exif, quality=95), LIMITS)
    assert img.rgb.shape == (32, 16, 3)
    assert img.rgb[4, 8, 0] > 200 and img.rgb[28, 8, 2] > 200


# --- metadata ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_icc_profile_carried_and_other_metadata_stripped(fmt):
    icc = _srgb_icc()
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0x0112] = 1
    src = _save(Image.fromarray(_rgb(16, 16)), "JPEG", icc_profile=icc, exif=exif, comment=b"secret")
    img = decode(src, LIMITS)
    assert img.icc_profile == icc
    out = encode(from_tensor(to_tensor([img]))[0], img.alpha, img.icc_profile, fmt, 90)
    back = _reopen(out.data)
    assert back.info.get("icc_profile") == icc
    assert not back.getexif() and "exif" not in back.info and "comment" not in back.info
    assert b"SpyCam" not in out.data and b"secret" not in out.data


def test_png_text_chunks_are_stripped():
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("Comment", "private")
    img = decode(_save(Image.fromarray(_rgb()), "PNG", pnginfo=meta), LIMITS)
    assert b"private" not in encode(img.rgb).data


# --- alpha and output formats ------------------------------------------------------------------------


def test_alpha_passes_through_exactly():
    rgba = np.random.default_rng(3).integers(0, 256, (9, 7, 4), dtype=np.uint8)
    img = decode(_save(Image.fromarray(rgba), "PNG"), LIMITS)
    np.testing.assert_array_equal(img.alpha, rgba[..., 3])
    out = encode(from_tensor(to_tensor([img]))[0], img.alpha, None, "png")
    back = np.asarray(_reopen(out.data))
    np.testing.assert_array_equal(back, rgba)


def test_webp_output_keeps_alpha():
    alpha = np.zeros((16, 16), np.uint8)
    alpha[:, 8:] = 255
    out = encode(np.full((16, 16, 3), 90, np.uint8), alpha, None, "webp", 90)
    assert (out.content_type, out.extension) == ("image/webp", "webp")
    back = _reopen(out.data)
    assert back.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(back)[..., 3], alpha)


def test_jpeg_output_flattens_alpha_onto_white():
    rgb = np.zeros((16, 48, 3), np.uint8)
    alpha = np.zeros((16, 48), np.uint8)
    alpha[:, 16:32] = 128
    alpha[:, 32:] = 255
    out = encode(rgb, alpha, None, "jpeg", 95)
    assert (out.content_type, out.extension, out.width, out.height) == ("image/jpeg", "jpg", 48, 16)
    back = np.asarray(_reopen(out.data)).astype(int)
    assert back.shape == (16, 48, 3)
    assert np.abs(back[8, 8] - 255).max() <= 3
    assert np.abs(back[8, 24] - 127).max() <= 3
    assert np.abs(back[8, 40]).max() <= 3


def test_uint16_alpha_is_scaled_to_8_bit():
    alpha = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    out = encode(np.zeros((1, 4, 3), np.uint8), alpha)
    np.testing.assert_array_equal(np.asarray(_reopen(out.data))[0, :, 3], [0, 1, 128, 255])


def test_encode_validates_its_arguments():
    rgb = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(InvalidInput, match="output_format"):
        encode(rgb, fmt="gif")
    with pytest.raises(InvalidInput, match="output_quality"):
        encode(rgb, fmt="jpeg", quality=0)
    with pytest.raises(InvalidInput, match="16383"):
        encode(np.zeros((1, 16384, 3), np.uint8), fmt="webp")
    with pytest.raises(ValueError, match="uint8"):
        encode(rgb.astype(np.float32))
    assert encode(rgb, fmt="JPG").content_type == "image/jpeg"


# --- hostile inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [LIMITS, ImageLimits(max_pixels=10**12, max_side_px=10**6)])
def test_decompression_bomb_over_pillows_limit(limits):
    data = _png_claiming(20000, 20000)
    assert len(data) < 200
    for fn in (probe, decode):
        with pytest.raises(ImageTooLarge, match="pixels"):
            fn(data, limits)


def test_bomb_under_pillows_limit_but_over_ours():
    data = _png_claiming(3000, 3000)  # 9 MP: fine for Pillow, its data is missing
    with pytest.raises(ImageTooLarge, match="3000x3000 = 9000000 pixels; at most 1000000"):
        decode(data, ImageLimits(max_pixels=1_000_000))


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_raised_as_error_maps_to_too_large():
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        probe(_png_claiming(10000, 10000), ImageLimits(max_pixels=10**9))


def test_side_cap():
    with pytest.raises(ImageTooLarge, match="longest accepted side is 16384"):
        probe(_png_claiming(1_000_000, 1), LIMITS)


def test_gif_bomb_header():
    screen = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x4c\x01\x00;"
    with pytest.raises(ImageTooLarge):
        decode(screen + frame, LIMITS)


def test_byte_cap():
    data = _save(Image.fromarray(_rgb(32, 32)), "PNG")
    with pytest.raises(ImageTooLarge, match=f"input is {len(data)} bytes"):
        probe(data, ImageLimits(max_bytes=len(data) - 1))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(fmt):
    data = _save(Image.fromarray(_rgb(64, 64)), fmt)
    with pytest.raises(UnsupportedImage, match="truncated or corrupt"):
        decode(data[: len(data) // 2], LIMITS)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', "SVG"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
        (b"just some text, not an image\n", "text"),
        ("Ünïcödé テキスト, still text".encode(), "text"),
        (b"", "empty"),
        (b"%PDF-1.7 ...", "PDF"),
        (bytes(range(7, 64)), "binary"),
    ],
)
def test_non_images_are_unsupported(data, kind):
    with pytest.raises(UnsupportedImage, match=kind) as err:
        probe(data, LIMITS)
    assert "PNG, JPEG, WebP, GIF, TIFF or BMP" in err.value.detail
    assert err.value.code == "unsupported_image"


def test_magic_without_a_valid_header_is_unsupported():
    with pytest.raises(UnsupportedImage, match="not a readable PNG"):
        probe(b"\x89PNG\r\n\x1a\n" + b"garbage" * 4, LIMITS)


def test_decode_refuses_to_run_with_load_truncated_images(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(InternalError, match="LOAD_TRUNCATED_IMAGES"):
        decode(_save(Image.fromarray(_rgb()), "PNG"), LIMITS)


def test_limits_from_settings():
    s = Settings(max_input_bytes=10, max_pixels=20, max_side_px=30)
    assert ImageLimits.from_settings(s) == ImageLimits(10, 20, 30)


# --- tensors -----------------------------------------------------------------------------------------


def _decoded(rgb: np.ndarray, alpha: np.ndarray | None = None) -> DecodedImage:
    return DecodedImage(rgb, alpha, None, rgb.shape[1], rgb.shape[0], "png")


def test_every_8bit_value_survives_the_tensor_round_trip():
    rgb = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    x = to_tensor([_decoded(rgb)])
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32 and x.is_contiguous()
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(from_tensor(x)[0], rgb)


def test_to_tensor_batches_and_checks_sizes():
    a, b = _rgb(seed=1), _rgb(seed=2)
    x = to_tensor([_decoded(a), _decoded(b)])
    assert x.shape == (2, 3, 6, 8)
    torch.testing.assert_close(x[1, 2], torch.from_numpy(b[..., 2] / 255.0).float())
    mixed = to_tensor([_decoded(a), _decoded(a.astype(np.uint16) * 257)])
    torch.testing.assert_close(mixed[0], mixed[1])
    with pytest.raises(ValueError, match="share a size"):
        to_tensor([_decoded(a), _decoded(_rgb(6, 9))])
    with pytest.raises(ValueError, match="at least one"):
        to_tensor([])
    flipped = a[:, ::-1]
    flipped.flags.writeable = False
    torch.testing.assert_close(
        to_tensor([_decoded(flipped)])[0, 0], torch.from_numpy(a[:, ::-1, 0] / 255.0).float()
    )


def test_from_tensor_clamps_and_rounds():
    x = torch.tensor([-1.0, 0.0, 0.4 / 255, 0.6 / 255, 127.5 / 255 + 1e-4, 1.0, 7.0]).reshape(1, 1, 1, 7)
    out = from_tensor(x.expand(2, 3, 1, 7))
    assert len(out) == 2 and out[0].shape == (1, 7, 3) and out[0].dtype == np.uint8
    np.testing.assert_array_equal(out[1][0, :, 1], [0, 0, 0, 1, 128, 255, 255])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        from_tensor(torch.zeros(3, 4, 4))


def test_identity_round_trip_is_pixel_exact():
    rgba = np.random.default_rng(5).integers(0, 256, (33, 17, 4), dtype=np.uint8)
    for arr in (rgba, rgba[..., :3].copy()):
        img = decode(_save(Image.fromarray(arr), "PNG"), LIMITS)
        out = encode(from_tensor(to_tensor([img]))[0], img.alpha, img.icc_profile, "png")
        np.testing.assert_array_equal(np.asarray(_reopen(out.data)), arr)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_identity_round_trip_property(h, w, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = decode(_save(Image.fromarray(rgb), "PNG"), LIMITS)
    back = decode(encode(from_tensor(to_tensor([img]))[0]).data, LIMITS)
    np.testing.assert_array_equal(back.rgb, rgb)


def test_resize_rgb_ignores_aspect_and_keeps_dtype():
    img = _decoded(np.full((6, 8, 3), 77, np.uint8), np.full((6, 8), 200, np.uint8))
    assert resize_rgb(img, (6, 8)) is img
    for size in ((3, 20), (12, 2), (40, 40)):
        out = resize_rgb(img, size)
        assert out.rgb.shape == (*size, 3) and out.alpha.shape == size and (out.height, out.width) == size
        assert (out.rgb == 77).all() and (out.alpha == 200).all() and out.rgb.dtype == np.uint8
    wide = resize_rgb(_decoded(np.full((4, 4, 3), 40000, np.uint16)), (2, 9))
    assert wide.rgb.dtype == np.uint16 and (wide.rgb == 40000).all()
    ramp = _decoded(np.repeat(np.arange(0, 256, 32, dtype=np.uint8), 3).reshape(1, 8, 3))
    # 2:1 with a triangle filter two pixels wide (weights 1/4, 3/4, 3/4, 1/4), renormalised at edges;
    # plain bilinear would give [16, 80, 144, 208].
    assert list(resize_rgb(ramp, (1, 4)).rgb[0, :, 0]) == [23, 80, 144, 201]


# --- data URIs ---------------------------------------------------------------------------------------


def test_data_uri_round_trip():
    enc = encode(_rgb())
    uri = data_uri(enc)
    assert uri.startswith("data:image/png;base64,")
    assert parse_data_uri(uri) == (enc.data, "image/png")
    assert decode(parse_data_uri(uri)[0], LIMITS).rgb.shape == (6, 8, 3)


def test_parse_data_uri_variants():
    assert parse_data_uri("data:,a%20b%FF") == (b"a b\xff", "text/plain")
    assert parse_data_uri("DATA:Image/PNG;name=x.png;base64,aGk")[0] == b"hi"  # missing padding
    assert parse_data_uri("data:image/png;base64,aG k=\n")[0] == b"hi"
    assert parse_data_uri("data:;base64,%2B%2F8%3D")[0] == b"\xfb\xff"
    assert parse_data_uri("data:;base64,-_8=")[0] == b"\xfb\xff"


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("https://example.com/x.png", "must start with 'data:'"),
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64,@@@@", "base64"),
    ],
)
def test_parse_data_uri_rejects_malformed(uri, match):
    with pytest.raises(InvalidInput, match=match):
        parse_data_uri(uri)


def test_parse_data_uri_size_cap():
    for payload in ("A" * 1336, "A" * 10_000):  # 1002 bytes decoded; an absurd length
        with pytest.raises(ImageTooLarge, match="1000 byte limit"):
            parse_data_uri("data:image/png;base64," + payload, max_bytes=1000)
    assert len(parse_data_uri("data:;base64," + "A" * 1332, max_bytes=1000)[0]) == 999


# --- import hygiene ----------------------------------------------------------------------------------


def test_import_does_not_load_torch():
    code = "import sys, worker.imaging; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_module_names_its_accepted_formats():
    assert acceptance.ACCEPTED_FORMATS == ("png", "jpeg", "webp", "gif", "tiff", "bmp")


# ---- the conversions through OpenCV's planes give exactly the torch path's values ------------------


@pytest.fixture
def small_planes(monkeypatch):
    """The OpenCV planes path for this test's small images too (it starts at 512² in workers)."""
    import worker.imaging as imaging

    monkeypatch.setattr(imaging, "PLANES_MIN_PIXELS", 1)


def _torch_path(monkeypatch, fn, *args):
    """``fn(*args)`` with OpenCV hidden from worker.imaging: the plain torch conversions."""
    import worker.imaging as imaging

    with monkeypatch.context() as m:
        m.setattr(imaging, "_opencv", lambda: None)
        return fn(*args)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("batch", [1, 3])
def test_to_tensor_through_planes_equals_the_strided_conversion(monkeypatch, small_planes, dtype,
                                                                 batch) -> None:
    rng = np.random.default_rng(batch)
    top = np.iinfo(dtype).max
    images = [DecodedImage(rng.integers(0, top, (40, 33, 3), endpoint=True).astype(dtype), None, None,
                           33, 40, "png") for _ in range(batch)]
    images[0].rgb[0, :3] = [[0, top, 1]]  # the ends of the range
    import worker.imaging as imaging

    assert imaging._planes_suit(40, 33)
    got = to_tensor(images)
    want = _torch_path(monkeypatch, to_tensor, images)
    assert got.is_contiguous() and got.shape == (batch, 3, 40, 33)
    assert torch.equal(got, want)


@pytest.mark.parametrize("channels", [3, 4])
def test_from_tensor_through_planes_equals_rounding_in_torch(monkeypatch, small_planes, channels) -> None:
    g = torch.Generator().manual_seed(channels)
    x = torch.rand(2, channels, 24, 31, generator=g) * 1.4 - 0.2  # out of range both ways: clamped
    ties = torch.tensor([0.5, 1.5, 2.5, 127.5, 254.5, 255.5, -0.5]) / 255.0  # rounded half to even
    x[0, 0, 0, : ties.numel()] = ties
    x[1, 1, 2, :4] = torch.tensor([float("inf"), -float("inf"), 1.0, 0.0])
    import worker.imaging as imaging

    assert imaging._planes_suit(24, 31)
    got = imaging._to_uint8_hwc(x)
    want = _torch_path(monkeypatch, imaging._to_uint8_hwc, x)
    assert [a.shape for a in got] == [(24, 31, channels)] * 2
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    cl = imaging._to_uint8_hwc(x.contiguous(memory_format=torch.channels_last))  # any float layout
    assert all(np.array_equal(a, b) for a, b in zip(cl, want, strict=True))


def test_the_planes_path_starts_at_512_squared_and_never_under_16_a_side() -> None:
    import worker.imaging as imaging

    assert imaging._planes_suit(512, 512) and imaging._planes_suit(2048, 128)
    assert not imaging._planes_suit(256, 256) and not imaging._planes_suit(8, 2**20)
