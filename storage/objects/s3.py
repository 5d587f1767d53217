"""The S3 object store: any S3-compatible endpoint through boto3. PUTs are atomic; result URLs are
presigned (or under a configured public base).

The service reaches S3 at ``s3_endpoint_url``; clients may need another address for the same server
(compose: ``http://minio:9000`` inside, ``http://localhost:9000`` on the host). A presigned URL signs
its host, so URLs for clients are signed by a second client for ``s3_public_endpoint_url``; signing
makes no request, so that address need not be reachable from the service."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import quote

from darkroom.errors import NotFound, StorageUnavailable
from darkroom.settings import Settings
from storage.objects.base import ObjectInfo, ObjectStore, check_key, register_backend

log = logging.getLogger(__name__)


class S3ObjectStore(ObjectStore):
    """Any S3-compatible endpoint through boto3 (MinIO in compose, AWS in production, moto in tests)."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.presign_ttl_s = settings.s3_presign_ttl_s
        self.public_base = (settings.s3_public_base_url or "").rstrip("/")
        self.client = _boto_client(settings, settings.s3_endpoint_url)
        public_endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        same = public_endpoint == settings.s3_endpoint_url
        self.presigner = self.client if same else _boto_client(settings, public_endpoint)
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
        return self.presigner.generate_presigned_url(
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


def _boto_client(settings: Settings, endpoint_url: str | None):
    """A boto3 S3 client for ``endpoint_url`` with the settings' credentials, timeouts and retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.s3_connect_timeout_s,
        read_timeout=settings.s3_read_timeout_s,
        retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        signature_version="s3v4",
        s3={"addressing_style": "path"},
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        config=config,
    )


@register_backend("s3")
def _s3(settings: Settings) -> ObjectStore:
    return S3ObjectStore(settings)
