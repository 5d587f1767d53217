"""``s3_public_endpoint_url``: the service talks to S3 at one address, clients get presigned URLs for
another (compose: ``http://minio:9000`` inside, ``http://localhost:9000`` on the host).

One moto server plays both: the service reaches it as ``127.0.0.1``, clients as ``localhost``."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from darkroom.cli.embedded import free_port
from storage.objects import S3ObjectStore
from tests.support.harness import make_settings
from tests.support.images import gradient, png_bytes
from tests.support.servers import running_api


@pytest.fixture(scope="module")
def endpoints(s3_endpoint) -> tuple[str, str]:
    """(internal, public): the same moto server under two host names."""
    assert urlsplit(s3_endpoint).hostname == "127.0.0.1"
    return s3_endpoint, s3_endpoint.replace("127.0.0.1", "localhost")


def test_presigned_urls_name_the_public_endpoint_and_download(endpoints):
    internal, public = endpoints
    store = S3ObjectStore(make_settings("", internal, 0, s3_public_endpoint_url=public))
    key = f"{uuid.uuid4()}/0.png"
    store.put(key, b"result bytes", "image/png")  # the service's own calls use the internal endpoint

    url = store.url(key)

    assert url.startswith(f"{public}/darkroom-test/{key}?")
    assert "X-Amz-Signature=" in url
    assert store.client.meta.endpoint_url == internal
    assert store.presigner.meta.endpoint_url == public
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"result bytes"


def test_without_a_public_endpoint_urls_name_the_service_endpoint(endpoints):
    internal, _ = endpoints
    for public in (None, ""):  # compose passes an empty variable as ""
        store = S3ObjectStore(make_settings("", internal, 0, s3_public_endpoint_url=public))
        assert store.presigner is store.client
        assert store.url("some/key.png").startswith(f"{internal}/darkroom-test/some/key.png?")


def test_a_public_base_url_still_wins(endpoints):
    internal, public = endpoints
    store = S3ObjectStore(make_settings("", internal, 0, s3_public_endpoint_url=public,
                                        s3_public_base_url="https://cdn.example.com/darkroom/"))
    assert store.url("a/0.png") == "https://cdn.example.com/darkroom/a/0.png"


def test_the_api_redirects_uploads_to_the_public_endpoint(redis_url, endpoints):
    internal, public = endpoints
    settings = make_settings(redis_url, internal, free_port(), s3_public_endpoint_url=public)
    image = png_bytes(gradient())
    with running_api(settings) as api:
        upload = httpx.post(f"{api}/storage/upload", files={"file": ("photo.png", image, "image/png")})
        assert upload.status_code == 200, upload.text
        redirect = httpx.get(upload.json()["url"])
        assert redirect.status_code == 307
        assert redirect.headers["location"].startswith(f"{public}/darkroom-test/uploads/")
        assert httpx.get(redirect.headers["location"]).content == image
