"""S3 as the core's ObjectStore: 404 means "not there", 403 is permanent, the rest is transient."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.errors import JobError, transient
from ..core.ports import ObjectInfo
from ..observability import tracer
from .clients import client

_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "Forbidden", "AllAccessDisabled", "InvalidObjectState"}
NOT_FOUND_CODES = frozenset(_NOT_FOUND)  # S3 error codes that mean "not there" (aws/jobs.py uses them too)


def _fail(exc: Exception, action: str, bucket: str, key: str) -> JobError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _DENIED:
            return JobError("access_denied", f"S3 refused {action} on s3://{bucket}/{key} ({code}); check the "
                            "worker role and the bucket's policy")
        return transient("storage_error", f"S3 {action} on s3://{bucket}/{key} failed: {code}")
    return transient("storage_error", f"S3 {action} on s3://{bucket}/{key} failed: {exc}")


def _not_found(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code", "") in _NOT_FOUND


def _info(bucket: str, key: str, head: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(bucket=bucket, key=key, size=int(head.get("ContentLength", 0)), etag=head.get("ETag", ""),
                      version_id=head.get("VersionId"), last_modified=head["LastModified"],
                      metadata=dict(head.get("Metadata") or {}), content_type=head.get("ContentType", ""))


class S3Store:
    def __init__(self, s3=None):
        self._s3 = s3

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = client("s3")
        return self._s3

    @tracer.capture_method(capture_response=False)
    def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo | None:
        kwargs = {"VersionId": version_id} if version_id else {}
        try:
            return _info(bucket, key, self.s3.head_object(Bucket=bucket, Key=key, **kwargs))
        except (ClientError, BotoCoreError) as exc:
            if _not_found(exc):
                return None
            raise _fail(exc, "HeadObject", bucket, key) from None

    @tracer.capture_method(capture_response=False)
    def get(self, bucket: str, key: str, version_id: str | None = None) -> tuple[bytes, ObjectInfo] | None:
        kwargs = {"VersionId": version_id} if version_id else {}
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key, **kwargs)
            return response["Body"].read(), _info(bucket, key, response)
        except (ClientError, BotoCoreError) as exc:
            if _not_found(exc):
                return None
            raise _fail(exc, "GetObject", bucket, key) from None

    @tracer.capture_method(capture_response=False)
    def list_keys(self, bucket: str, prefix: str, limit: int = 50) -> list[str]:
        try:
            response = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit)
        except (ClientError, BotoCoreError) as exc:
            raise _fail(exc, "ListObjectsV2", bucket, prefix) from None
        return [item["Key"] for item in response.get("Contents", [])]

    @tracer.capture_method(capture_response=False)
    def put(self, bucket: str, key: str, data: bytes, content_type: str,
            metadata: dict[str, str] | None = None) -> None:
        try:
            self.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                               Metadata=metadata or {})
        except (ClientError, BotoCoreError) as exc:
            raise _fail(exc, "PutObject", bucket, key) from None
