"""Object storage for inputs and results: S3 (any S3-compatible endpoint) or the local disk.

Keys are deterministic per request (``<request_id>/<index>.<ext>``), so writing a result twice writes
the same bytes to the same key. Objects appear whole or not at all: S3 PUTs are atomic and the local
backend writes to a temporary file and renames it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from darkroom.errors import NotFound, StorageUnavailable
from darkroom.settings import Settings

log = logging.getLogger(__name__)


# --- the object key layout (the only place it is spelled) ---


def input_key(request_id: str, field: str) -> str:
    """Where an inline (data URI) input of a request is kept."""
    return f"inputs/{request_id}/{field}"


def output_key(request_id: str, file_name: str) -> str:
    """Where a request's output file is written; deterministic, so a re-run writes the same key."""
    return f"{request_id}/{file_name}"


def request_prefixes(request_id: str) -> list[str]:
    """Every prefix holding objects of one request (its inputs, its outputs)."""
    return [f"inputs/{request_id}/", f"{request_id}/"]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    modified_at: float  # unix seconds
    size: int


class ObjectStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def url(self, key: str) -> str:
        """A URL a client can download the object from (presigned or public)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    @abstractmethod
    def check(self) -> None:
        """Raise StorageUnavailable when the store cannot be reached."""

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (for `darkroom jobs purge`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its objects")


def check_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid object key {key!r}")
    return key


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
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
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


class S3ObjectStore(ObjectStore):
    """Any S3-compatible endpoint through boto3 (MinIO in compose, AWS in production, moto in tests)."""

    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = settings.s3_bucket
        self.presign_ttl_s = settings.s3_presign_ttl_s
        self.public_base = (settings.s3_public_base_url or "").rstrip("/")
        config = Config(
            connect_timeout=settings.s3_connect_timeout_s,
            read_timeout=settings.s3_read_timeout_s,
            retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": "path"},
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=config,
        )
        if settings.s3_create_bucket:
            self.ensure_bucket(settings.s3_region)

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"object {kwargs.get('Key', '')} not found") from exc
            raise StorageUnavailable(f"S3 {what} failed: {code or exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 {what} failed: {exc}") from exc

    def ensure_bucket(self, region: str) -> None:
        try:
            self._call("head_bucket", self.client.head_bucket)
        except NotFound:
            kwargs = {}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self._call("create_bucket", self.client.create_bucket, **kwargs)
            log.info("created bucket %s", self.bucket)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._call("put", self.client.put_object, Key=check_key(key), Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        return self._call("get", self.client.get_object, Key=check_key(key))["Body"].read()

    def url(self, key: str) -> str:
        if self.public_base:
            return f"{self.public_base}/{quote(check_key(key))}"
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=self.presign_ttl_s
        )

    def delete_prefix(self, prefix: str) -> int:
        listing = self._call("list", self.client.list_objects_v2, Prefix=check_key(prefix))
        keys = [{"Key": o["Key"]} for o in listing.get("Contents", [])]
        if keys:
            self._call("delete", self.client.delete_objects, Delete={"Objects": keys})
        return len(keys)

    def check(self) -> None:
        self._call("head_bucket", self.client.head_bucket)

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        token: dict = {}
        while True:
            page = self._call("list", self.client.list_objects_v2, Prefix=prefix, **token)
            for obj in page.get("Contents", []):
                yield ObjectInfo(obj["Key"], obj["LastModified"].timestamp(), int(obj.get("Size", 0)))
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}


def build_object_store(settings: Settings) -> ObjectStore:
    if settings.storage_backend == "s3":
        return S3ObjectStore(settings)
    return LocalObjectStore(settings.local_storage_dir, settings.api_base_url)
