"""Object storage for inputs and results: one module per backend in this folder, registered by name
(``storage_backend``): ``local.py`` (the disk, the embedded default) and ``s3.py`` (any S3-compatible
endpoint). A new backend is one more module here (decorate its factory with ``register_backend``)
and its import below.

Keys are deterministic per request (``<request_id>/<index>.<ext>``, see ``base.py``), so writing a
result twice writes the same bytes to the same key, and objects appear whole or not at all.
"""

from __future__ import annotations

from darkroom.settings import Settings
from storage.objects.base import (
    BACKENDS,
    ObjectInfo,
    ObjectStore,
    check_key,
    input_key,
    output_key,
    register_backend,
    request_prefixes,
)
from storage.objects.local import LocalObjectStore  # each import registers its backend
from storage.objects.s3 import S3ObjectStore

__all__ = [
    "BACKENDS", "LocalObjectStore", "ObjectInfo", "ObjectStore", "S3ObjectStore", "build_object_store",
    "check_key", "input_key", "output_key", "register_backend", "request_prefixes",
]


def build_object_store(settings: Settings) -> ObjectStore:
    """The object store ``settings.storage_backend`` names."""
    try:
        factory = BACKENDS[settings.storage_backend]
    except KeyError:
        raise ValueError(f"unknown storage_backend {settings.storage_backend!r}; "
                         f"known: {', '.join(sorted(BACKENDS))}") from None
    return factory(settings)
