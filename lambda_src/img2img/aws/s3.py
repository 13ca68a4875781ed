"""S3 as the core's ObjectStore: 404 means "not there", 403 is permanent, SlowDown/5xx and network faults
are transient, and any other answer is a defect of ours (`internal_error`): transient is a closed list."""
from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.errors import JobError, transient
from ..core.ports import ObjectInfo
from ..observability import tracer
from .clients import NETWORK_FAULTS, client

# The one home of S3's error codes, by what we do about them (the API's edge imports these too).
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchBucket"})
DENIED = frozenset({"403", "AccessDenied", "Forbidden", "AllAccessDisabled", "InvalidObjectState",
                    "KMS.DisabledException", "KMS.AccessDeniedException"})
TRANSIENT = frozenset({"SlowDown", "503", "500", "InternalError", "ServiceUnavailable", "RequestTimeout",
                       "RequestTimeTooSkewed", "OperationAborted", "ThrottlingException", "KMS.ThrottlingException"})
NOT_FOUND_CODES = NOT_FOUND  # the name aws/jobs.py imports


def _fail(exc: Exception, action: str, bucket: str, key: str) -> JobError:
    where = f"S3 {action} on s3://{bucket}/{key[:200]}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in DENIED:
            return JobError("access_denied", f"{where} was refused ({code}); check the worker role and the "
                            "bucket's policy")
        if code in TRANSIENT or status >= 500:
            return transient("storage_error", f"{where} failed: {code or status}")
        return JobError("internal_error", f"{where} was rejected ({code or status}: "
                        f"{str(error.get('Message', ''))[:200]}): a request this pipeline should not make",
                        details={"s3_error": code})
    if isinstance(exc, NETWORK_FAULTS):
        return transient("storage_error", f"{where} failed: {exc}")
    return JobError("internal_error", f"{where} could not be sent: {type(exc).__name__}: {exc}"[:500],
                    details={"exception": type(exc).__name__})


def _not_found(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code", "") in NOT_FOUND


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
        """One PutObject of the bytes as they are: that is the streaming upload for outputs.

        Outputs (upscales: tens of MB) are already one `bytes` in memory; PutObject sends that buffer
        without copying it (checksum and signature are computed over it in place) and takes up to 5 GB.
        boto3's managed transfer (`upload_fileobj` + TransferConfig) would read every part of a BytesIO
        into a new buffer, a second copy of the whole image (measured: +40 MB for a 40 MB output, against
        +2.5 MB here; tests/handlers/test_s3_store.py pins it), and would bring its own exception types
        into the error classification below."""
        try:
            self.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                               Metadata=metadata or {})
        except (ClientError, BotoCoreError) as exc:
            raise _fail(exc, "PutObject", bucket, key) from None

    @tracer.capture_method(capture_response=False)
    def delete(self, bucket: str, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            if not _not_found(exc):
                raise _fail(exc, "DeleteObject", bucket, key) from None
