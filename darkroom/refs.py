"""References to objects Darkroom stores itself (inputs moved out of request bodies, uploads)."""

import urllib.parse

OBJECT_REF_PREFIX = "darkroom-object:"


def object_ref_key(value: str) -> str | None:
    """The object key of a reference, or None when ``value`` is not one."""
    if value.startswith(OBJECT_REF_PREFIX):
        return value[len(OBJECT_REF_PREFIX):]
    return None


UPLOADS_PREFIX = "uploads/"
FILES_ROUTE = "/files/"


def own_file_key(url: str, api_base_url: str, storage_backend: str) -> str | None:
    """The object key behind a URL of the API's own ``/files/`` route, or None.

    Such URLs (uploads, and local-disk results) are read from object storage directly, never over
    HTTP. With S3 only uploads are served there (results have presigned URLs), so only ``uploads/``
    keys resolve. Keys with ``..`` segments or an absolute path never resolve.
    """
    prefix = api_base_url.rstrip("/") + FILES_ROUTE
    if not url.startswith(prefix):
        return None
    key = urllib.parse.unquote(url[len(prefix):].split("#", 1)[0].split("?", 1)[0])
    if not key or key.startswith("/") or ".." in key.split("/"):
        return None
    if storage_backend == "s3" and not key.startswith(UPLOADS_PREFIX):
        return None
    return key
