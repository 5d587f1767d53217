"""Fetching job inputs: object references, data URIs and http(s) URLs (with timeouts and a size cap)."""

from __future__ import annotations

import logging

import httpx

from darkroom.errors import FetchFailed, FetchUnavailable, ImageTooLarge, NotFound
from darkroom.refs import object_ref_key
from darkroom.settings import Settings
from storage.objects import ObjectStore
from worker.imaging import parse_data_uri

log = logging.getLogger(__name__)
MAX_REDIRECTS = 5


def fetch_input(ref: str, objects: ObjectStore, settings: Settings, field: str = "image_url") -> bytes:
    """The bytes behind an input reference; permanent problems raise FetchFailed, transient ones
    FetchUnavailable (retried by the worker)."""
    key = object_ref_key(ref) or _own_file_key(ref, settings)
    if key is not None:
        try:
            return objects.get(key)
        except NotFound as exc:
            raise FetchFailed(f"{field}: the stored input {key} no longer exists") from exc
    if ref.startswith("data:"):
        return parse_data_uri(ref)[0]
    return _fetch_http(ref, settings, field)


def _own_file_key(url: str, settings: Settings) -> str | None:
    """URLs of Darkroom's own local-disk objects are read from storage directly."""
    prefix = f"{settings.api_base_url}/files/"
    if settings.storage_backend == "local" and url.startswith(prefix):
        return httpx.URL(url).path.removeprefix("/files/")
    return None


def _fetch_http(url: str, settings: Settings, field: str) -> bytes:
    timeout = httpx.Timeout(settings.fetch_timeout_s, connect=settings.fetch_connect_timeout_s)
    cap = settings.max_input_bytes
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS) as client,
            client.stream("GET", url) as resp,
        ):
            if resp.status_code >= 500 or resp.status_code in (408, 429):
                raise FetchUnavailable(f"{field}: {url} answered {resp.status_code}")
            if resp.status_code >= 400:
                raise FetchFailed(f"{field}: {url} answered {resp.status_code}; check the URL")
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise ImageTooLarge(f"{field}: the file is larger than the {cap}-byte limit")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TooManyRedirects as exc:
        raise FetchFailed(f"{field}: more than {MAX_REDIRECTS} redirects") from exc
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise FetchUnavailable(f"{field}: fetching {url} failed: {exc}") from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{field}: cannot fetch {url}: {exc}") from exc
