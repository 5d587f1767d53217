"""Fetching job inputs: object references, the API's own ``/files/`` URLs, data URIs and http(s) URLs.

http(s) URLs go through ``darkroom.outbound.fetch_bytes``: the address rules of docs/decisions.md §18 on every
hop (at most 5 redirects), connections pinned to the checked address, connect and total timeouts and
the ``max_input_bytes`` cap while streaming. Refusals are permanent ``fetch_refused`` errors.
"""

from __future__ import annotations

import logging

from darkroom.acceptance import parse_data_uri
from darkroom.errors import FetchFailed, NotFound
from darkroom.outbound import fetch_bytes
from darkroom.refs import object_ref_key, own_file_key
from darkroom.settings import Settings
from storage.objects import ObjectStore

log = logging.getLogger(__name__)


def fetch_input(ref: str, objects: ObjectStore, settings: Settings, field: str = "image_url") -> bytes:
    """The bytes behind an input reference; permanent problems raise FetchFailed/FetchRefused, transient
    ones FetchUnavailable (retried by the worker)."""
    key = object_ref_key(ref) or own_file_key(ref, settings.api_base_url, settings.storage_backend)
    if key is not None:
        try:
            return objects.get(key)
        except NotFound as exc:
            raise FetchFailed(f"{field}: the stored input {key} no longer exists") from exc
    if ref.startswith("data:"):
        return parse_data_uri(ref, settings.max_input_bytes)[0]
    return fetch_bytes(ref, settings, field)
