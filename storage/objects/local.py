"""The local-disk object store (the embedded default): files under a directory, written to a
temporary file and renamed, so an object appears whole or not at all; the API serves them."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from darkroom.errors import NotFound, StorageUnavailable
from darkroom.settings import Settings
from storage.objects.base import ObjectInfo, ObjectStore, check_key, register_backend

log = logging.getLogger(__name__)
# what tempfile.mkstemp opens with (owner-only, as before)
_CREATE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL
                 | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))


class LocalObjectStore(ObjectStore):
    """Files under a directory; the API serves them at ``<public_base>/files/<key>``."""

    def __init__(self, root: Path, public_base: str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.public_base = public_base.rstrip("/")

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path(key)
        # A temporary name no other writer uses (O_EXCL makes sure), renamed into place: cheaper than
        # tempfile.mkstemp, which matters for small outputs (one put per job).
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            try:
                fd = os.open(tmp, _CREATE_FLAGS, 0o600)
            except FileNotFoundError:  # the request's folder does not exist yet
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, _CREATE_FLAGS, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageUnavailable(f"local storage write failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"object {key} not found") from exc
        except OSError as exc:
            raise StorageUnavailable(f"local storage read failed: {exc}") from exc

    def url(self, key: str) -> str:
        return f"{self.public_base}/files/{quote(check_key(key))}"

    def delete_prefix(self, prefix: str) -> int:
        target = self.path(prefix.rstrip("/"))
        if target.is_dir():
            count = sum(1 for p in target.rglob("*") if p.is_file())
            shutil.rmtree(target, ignore_errors=True)
            return count
        if target.is_file():
            target.unlink()
            return 1
        return 0

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageUnavailable(f"local storage directory {self.root} is not writable")

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and path.is_file():
                stat = path.stat()
                yield ObjectInfo(key, stat.st_mtime, stat.st_size)


@register_backend("local")
def _local(settings: Settings) -> ObjectStore:
    return LocalObjectStore(settings.local_storage_dir, settings.api_base_url)
