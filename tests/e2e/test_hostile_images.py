"""Hostile inputs are refused before any expensive work (docs/decisions.md §7, §18).

Data URIs are screened at submit: a synchronous 422 with the right ``error_type`` and no job. URLs
are checked without DNS at submit; what only the fetch can see (the bytes behind a URL) fails the
job in the worker, which probes before it decodes: the job ends COMPLETED with that ``error_type``.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.fal_queue import APP, submit, wait_done
from tests.support.fileserver import FileServer
from tests.support.harness import make_settings
from tests.support.images import gradient, png_bytes

CAP = 200_000


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    return screen + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00;"


def encoded(fmt: str, side: int = 64) -> bytes:
    rgb = np.random.default_rng(2).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt)
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"/>'
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"

HOSTILE = [
    # (id, bytes, declared type, error_type, the message says)
    ("bomb under Pillow's limit, over ours", png_claiming(8000, 7000), "image/png", "image_too_large",
     "56000000 pixels"),
    ("bomb over Pillow's limit", png_claiming(15000, 15000), "image/png", "image_too_large", "pixels"),
    ("side of a million pixels", png_claiming(1, 1_000_000), "image/png", "image_too_large",
     "longest accepted side is 16384"),
    ("GIF bomb header", gif_claiming(65535, 65535), "image/gif", "image_too_large", "pixels"),
    ("truncated PNG", encoded("PNG")[: len(encoded("PNG")) // 2], "image/png", "unsupported_image",
     "truncated"),
    ("truncated JPEG", encoded("JPEG", 256)[: len(encoded("JPEG", 256)) // 2], "image/jpeg",
     "unsupported_image", "truncated"),
    ("truncated WebP", encoded("WEBP")[:-100], "image/webp", "unsupported_image", "WEBP"),
    ("SVG as PNG", SVG, "image/png", "unsupported_image", "SVG"),
    ("SVG as SVG", SVG, "image/svg+xml", "unsupported_image", "SVG"),
    ("HTML as JPEG", HTML, "image/jpeg", "unsupported_image", "HTML"),
    ("PDF", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "image/png", "unsupported_image", "PDF"),
    ("empty", b"", "image/png", "unsupported_image", "empty"),
    ("PNG magic, garbage after", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png", "unsupported_image",
     "PNG"),
    ("over the byte cap", png_bytes(np.random.default_rng(3).integers(0, 256, (300, 300, 3), np.uint8)),
     "image/png", "image_too_large", f"{CAP}"),
]


@pytest.fixture(scope="module")
def api(redis_url, s3_endpoint) -> Iterator[TestClient]:
    """An API no worker serves (Redis db 12), with no hosts allow-listed and a small byte cap."""
    from api.app import create_app

    settings = make_settings(redis_url.rsplit("/", 1)[0] + "/12", s3_endpoint, 8993,
                             max_input_bytes=CAP, fetch_allow_hosts=[])
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize(("data", "declared", "error_type", "says"),
                         [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("field", ["image_url", "dissolve_image_url"])
def test_hostile_data_uris_get_a_synchronous_422(api, field, data, declared, error_type, says):
    body = {"image_url": data_uri(png_bytes(gradient(8, 8))), "enable_dissolve": True,
            "dissolve_image_url": data_uri(png_bytes(gradient(8, 8)))}
    body[field] = data_uri(data, declared)
    resp = api.post(f"/{APP}", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error_type"] == error_type
    assert resp.json()["detail"].startswith(f"{field}: ") and says in resp.json()["detail"]
    assert resp.headers["x-fal-error-type"] == error_type and "x-fal-request-id" not in resp.headers


def test_lying_types_and_animations_are_accepted_by_their_content(api):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    store = api.app.state.services
    for data, declared, sniffed in [(png_bytes(gradient(8, 8)), "image/jpeg", "image/png"),
                                    (encoded("JPEG"), "text/html", "image/jpeg"),
                                    (buf.getvalue(), "image/png", "image/gif")]:
        resp = api.post(f"/{APP}", json={"image_url": data_uri(data, declared)})
        assert resp.status_code == 200, resp.text
        job = store.store.get(resp.json()["request_id"])
        key = job.input["image_url"].split(":", 1)[1]
        head = store.objects.client.head_object(Bucket=store.settings.s3_bucket, Key=key)
        assert head["ContentType"] == sniffed


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.8/x.png", "http://192.168.1.1/x.png", "http://[::1]:8000/x.png",
    "http://127.0.0.1:8000/files/uploads/x.png",  # another API's files (not this one's base URL)
    "http://example.com@127.0.0.1/x.png",
])
def test_refused_urls_get_a_synchronous_422(api, url):
    resp = api.post(f"/{APP}", json={"image_url": url})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error_type"] == "fetch_refused" and resp.json()["detail"].startswith("image_url: ")


def test_own_upload_urls_pass_the_submit_check(api):
    base = api.app.state.services.settings.api_base_url  # a loopback address, yet our own
    resp = api.post(f"/{APP}", json={"image_url": f"{base}/files/uploads/whatever.png"})
    assert resp.status_code == 200, resp.text


# --- through the worker ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[FileServer]:
    srv = FileServer()  # 127.0.0.1: allow-listed by make_settings for the session worker
    srv.add("good.png", png_bytes(gradient(8, 6)))
    srv.add("drawing.png", SVG, "image/png")
    srv.add("page.jpg", HTML, "image/jpeg")
    srv.add("cut.jpg", encoded("JPEG", 256)[:3000], "image/jpeg")
    srv.add("tall.png", png_claiming(1, 1_000_000))
    yield srv
    srv.close()


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_hostile_images_behind_urls_fail_the_job_in_the_worker(client, hostile_server):
    cases = {"drawing.png": "unsupported_image", "page.jpg": "unsupported_image",
             "cut.jpg": "unsupported_image", "tall.png": "image_too_large", "good.png": None}
    # nothing to see at submit: only a URL
    subs = {name: submit(client, {"image_url": hostile_server.url(f"/file/{name}")}) for name in cases}
    for name, error_type in cases.items():
        status = wait_done(client, subs[name])
        assert status["status"] == "COMPLETED"
        assert status.get("error_type") == error_type, (name, status)
        result = client.get(subs[name]["response_url"])
        if error_type:
            assert result.status_code == 422 and result.json()["error_type"] == error_type
        else:
            assert result.status_code == 200 and result.json()["images"][0]["width"] == 8
