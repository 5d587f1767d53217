"""Turning stored records into what clients see: object keys become download URLs.

Records keep object keys, never URLs, so every read (result, webhook, eachlabs view) presigns afresh.
``url_for`` is the object store's ``url`` method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from darkroom.refs import object_ref_key

UrlFor = Callable[[str], str]


def public_result(result: dict[str, Any], url_for: UrlFor) -> dict[str, Any]:
    """The stored output with each image's ``key`` replaced by a fresh ``url``."""
    out = dict(result)
    images = []
    for image in result.get("images", []):
        image = dict(image)
        key = image.pop("key", None)
        if key:
            image["url"] = url_for(key)
        images.append(image)
    out["images"] = images
    return out


def public_input(data: dict[str, Any], url_for: UrlFor) -> dict[str, Any]:
    """The stored input with references to stashed objects (data URIs moved at submit) as URLs."""
    out = {}
    for name, value in data.items():
        key = object_ref_key(value) if isinstance(value, str) else None
        out[name] = url_for(key) if key else value
    return out


def first_image_url(result: dict[str, Any] | None, url_for: UrlFor) -> str | None:
    images = public_result(result or {}, url_for)["images"]
    return images[0].get("url") if images else None
