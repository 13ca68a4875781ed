"""What the core needs from the outside world. The `aws` package implements these with boto3;
tests and the offline tooling may implement them otherwise. No boto3 here."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .c2pa_manifest import SigningKey


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None
    last_modified: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = ""

    @property
    def version(self) -> str:
        """The version id where the bucket is versioned, else the ETag: what identifies this content."""
        return self.version_id if self.version_id not in (None, "", "null") else self.etag

    def ref(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id, "etag": self.etag}


class ObjectStore(Protocol):
    def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo | None: ...

    def get(self, bucket: str, key: str, version_id: str | None = None) -> tuple[bytes, ObjectInfo] | None: ...

    def list_keys(self, bucket: str, prefix: str, limit: int = 50) -> list[str]: ...

    def put(self, bucket: str, key: str, data: bytes, content_type: str,
            metadata: dict[str, str] | None = None) -> None: ...

    def delete(self, bucket: str, key: str) -> None: ...


class ModelInvoker(Protocol):
    def invoke(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]: ...


class EventPublisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> None: ...


class Scheduler(Protocol):
    def defer(self, message: dict[str, Any], delay_seconds: int) -> None: ...

    def retry_later(self, receipt_handle: str, delay_seconds: int) -> bool: ...


class BulkProgress(Protocol):
    """A bulk job's counters and rows' outcomes (core/bulk.py; DynamoDB: aws/bulk.py)."""

    def count(self, bulk_id: str, status: str, error_code: str | None,
              line: dict[str, Any] | None = None) -> Any: ...  # the Progress after it; once per row's line

    def get(self, bulk_id: str) -> Any: ...

    def request_report(self, bulk_id: str) -> bool: ...   # True for exactly one caller

    def release_report(self, bulk_id: str) -> None: ...

    def lines(self, bulk_id: str, digests: list[str]) -> dict[str, dict[str, Any]]: ...

    def complete(self, bulk_id: str, report_key: str, completed_at: str) -> bool: ...  # True exactly once
class QuotaLimiter(Protocol):
    """Per-model request budgets shared by every sandbox (DynamoDB in production: aws/quota.py).

    `acquire` takes a ticket for one model call, or honours the `reservation` a returning job holds: an
    Admission (wait 0 admits it, else the seconds until its turn and the slot reserved for then; the
    decisions are core/quota.py's). `throttled` reports that Bedrock throttled the model anyway."""

    def acquire(self, model_id: str, *, reservation: Any = None) -> Any: ...

    def throttled(self, model_id: str) -> None: ...


class SigningKeys(Protocol):
    """The C2PA signing key (KMS in production: aws/signing_keys.py); raises JobError when unusable."""

    def key(self) -> SigningKey: ...


class Guard(Protocol):
    """Runs `work` at most once per key (Powertools idempotency in production)."""

    def once(self, key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]: ...


class RunEveryTime:
    """A Guard with no memory, for callers that have no idempotency store configured."""

    def once(self, key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return work()
