"""``POST /storage/upload``: multipart and raw bodies, sniffed types, the size cap, refused non-images,
both storage backends, and an upload used as ``image_url`` by a real worker."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from darkroom.refs import own_file_key
from tests.support.fal_queue import first_image, result, submit
from tests.support.harness import make_settings
from tests.support.images import gradient, png_bytes

CAP = 100_000


def encoded(fmt: str, rgb: np.ndarray | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gradient(12, 10) if rgb is None else rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def noise_png(side: int) -> bytes:
    return png_bytes(np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def s3_api(redis_url, s3_endpoint) -> Iterator[TestClient]:
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/11", s3_endpoint, 8995, max_input_bytes=CAP)
    with TestClient(create_app(settings)) as client:
        yield client


def test_multipart_upload_sniffs_the_type_and_ignores_the_name(s3_api):
    data = encoded("PNG")
    files = {"file": ("../../evil.svg", data, "text/plain")}
    resp = s3_api.post("/storage/upload", files=files)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["content_type"] == "image/png" and out["file_name"] == "evil.png"
    assert (out["file_size"], out["width"], out["height"]) == (len(data), 12, 10)
    base = s3_api.app.state.services.settings.api_base_url
    assert out["url"].startswith(f"{base}/files/uploads/") and out["url"].endswith(".png")
    key = out["url"].split("/files/", 1)[1]
    assert s3_api.app.state.services.objects.get(key) == data
    redirect = s3_api.get(out["url"].removeprefix(base), follow_redirects=False)
    assert redirect.status_code == 307
    assert httpx.get(redirect.headers["location"], timeout=5).content == data  # presigned, moto on loopback


@pytest.mark.parametrize(("fmt", "declared", "name", "content_type", "file_name"), [
    ("JPEG", "application/octet-stream", "photo.bin", "image/jpeg", "photo.jpg"),
    ("GIF", "image/png", None, "image/gif", "upload.gif"),
    ("WEBP", "image/jpeg", "x.webp", "image/webp", "x.webp"),
    ("BMP", "", "weird name!.bmp", "image/bmp", "weird_name.bmp"),
    ("TIFF", "image/tiff", "scan.tif", "image/tiff", "scan.tiff"),
])
def test_raw_body_upload(s3_api, fmt, declared, name, content_type, file_name):
    params = {"file_name": name} if name else {}
    resp = s3_api.post("/storage/upload", content=encoded(fmt), params=params,
                       headers={"Content-Type": declared} if declared else {})
    assert resp.status_code == 200, resp.text
    assert resp.json()["content_type"] == content_type and resp.json()["file_name"] == file_name


def test_animated_gif_is_accepted(s3_api):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 128, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    resp = s3_api.post("/storage/upload", content=buf.getvalue())
    assert resp.status_code == 200 and resp.json()["content_type"] == "image/gif"


def test_uploads_over_the_cap_are_refused(s3_api):
    big = noise_png(220)
    assert len(big) > CAP
    resp = s3_api.post("/storage/upload", content=big)
    assert resp.status_code == 422 and resp.json()["error_type"] == "image_too_large"
    assert f"{CAP}-byte limit" in resp.json()["detail"] or f"{CAP} bytes" in resp.json()["detail"]

    def chunks():  # chunked, no Content-Length: the stream is abandoned past the cap
        for _ in range(1000):
            yield b"\x89PNG\r\n\x1a\n" + b"\0" * 65536

    resp = s3_api.post("/storage/upload", content=chunks())
    assert resp.status_code == 422 and "limit" in resp.json()["detail"]
    resp = s3_api.post("/storage/upload", files={"file": ("a.png", big, "image/png")})
    assert resp.status_code == 422 and resp.json()["error_type"] == "image_too_large"


@pytest.mark.parametrize(("data", "error_type", "says"), [
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>', "unsupported_image",
     "SVG"),
    (b"<!DOCTYPE html><html><body><img src=x></body></html>", "unsupported_image", "HTML"),
    (b"", "unsupported_image", "empty"),
    (encoded("PNG", np.zeros((64, 64, 3), np.uint8))[:-40], "unsupported_image", "truncated"),
    (encoded("JPEG")[: len(encoded("JPEG")) // 2], "unsupported_image", "truncated"),
])
def test_non_images_are_refused(s3_api, data, error_type, says):
    resp = s3_api.post("/storage/upload", content=data, headers={"Content-Type": "image/png"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error_type"] == error_type and says.lower() in resp.json()["detail"].lower()
    assert resp.json()["detail"].startswith("file: ")


def test_multipart_without_a_file_field(s3_api):
    files = {"other": ("a.png", b"x", "image/png")}
    resp = s3_api.post("/storage/upload", data={"image": "nope"}, files=files)
    assert resp.status_code == 422 and "named 'file'" in resp.json()["detail"]


def test_local_backend_serves_uploads(redis_url, tmp_path):
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/11", None, 8994, local_storage_dir=tmp_path)
    data = encoded("PNG")
    with TestClient(create_app(settings)) as client:
        out = client.post("/storage/upload", content=data).json()
        assert (tmp_path / out["url"].split("/files/", 1)[1]).read_bytes() == data
        assert client.get(out["url"].removeprefix(settings.api_base_url)).content == data


def test_own_file_urls_resolve_to_keys():
    base = "http://api.test:8000"
    assert own_file_key(f"{base}/files/uploads/a.png", base, "s3") == "uploads/a.png"
    assert own_file_key(f"{base}/files/uploads/a%20b.png?x=1#f", base, "s3") == "uploads/a b.png"
    assert own_file_key(f"{base}/files/req/0.png", base, "s3") is None  # S3 serves uploads only
    assert own_file_key(f"{base}/files/req/0.png", base, "local") == "req/0.png"
    assert own_file_key(f"{base}/files/uploads/../secret", base, "local") is None
    assert own_file_key(f"{base}/files/", base, "local") is None
    assert own_file_key("http://other.test/files/uploads/a.png", base, "s3") is None


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_an_upload_is_usable_as_image_url(client):
    src = gradient(20, 14)
    up = client.post("/storage/upload", files={"file": ("in.png", png_bytes(src), "image/png")})
    assert up.status_code == 200, up.text
    sub = submit(client, {"image_url": up.json()["url"]})
    assert np.array_equal(first_image(result(client, sub)), src)
