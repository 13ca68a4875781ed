"""The API's AWS edge: job items in the idempotency table, the job queue, presigned URLs, records.

State design (docs/api.md): an API job is
- a job item `api-job#<job_id>` in the idempotency table (its own key namespace; Powertools' items
  are `img2img-job#<hash>` and `img2img-api#<hash>`), written when the job is accepted: `queued`;
- `running` while the worker's idempotency item for the job is INPROGRESS (when the item names it);
- its outcome record in the output bucket at the record key the job item names: `succeeded`/`failed`.
Nothing is updated in place: the record is the truth, the job item only says where to look.
"""
from __future__ import annotations

import contextlib
import json
import time
from functools import cached_property
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.errors import transient
from ..tables import PARTITION_KEY, TTL_ATTRIBUTE, key
from .clients import client
from .idempotency import JOB_KEY_PREFIX, Idempotency
from .s3 import NOT_FOUND_CODES

JOB_ITEM_PREFIX = "api-job#"


class ApiEdge:
    def __init__(self, table_name: str, queue_url: str, ttl_seconds: int, presign_seconds: int):
        self.table_name = table_name
        self.queue_url = queue_url
        self.ttl_seconds = ttl_seconds
        self.presign_seconds = presign_seconds

    # ---- job items ------------------------------------------------------------------------------
    def put_job(self, job_id: str, item: dict[str, Any]) -> None:
        body = json.dumps(item, separators=(",", ":"), default=str)
        try:
            client("dynamodb").put_item(TableName=self.table_name, Item={
                PARTITION_KEY: {"S": JOB_ITEM_PREFIX + job_id},
                "job": {"S": body},
                TTL_ATTRIBUTE: {"N": str(int(time.time()) + self.ttl_seconds)},
            })
        except (ClientError, BotoCoreError) as exc:
            raise transient("storage_error", f"could not store the job: {exc}") from None

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        try:
            item = client("dynamodb").get_item(TableName=self.table_name, Key=key(JOB_ITEM_PREFIX + job_id),
                                               ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise transient("storage_error", f"could not read the job: {exc}") from None
        return json.loads(item["job"]["S"]) if item else None

    @cached_property
    def _worker_items(self) -> Idempotency:
        """The worker guard's configuration (aws/idempotency.py), read-only here."""
        return Idempotency(self.table_name, self.ttl_seconds, JOB_KEY_PREFIX)

    def in_progress(self, job_key: dict[str, Any] | None) -> bool:
        """Is the worker's idempotency item for this job INPROGRESS? (one GetItem)"""
        if not job_key:
            return False
        try:
            return self._worker_items.status(job_key) == "INPROGRESS"
        except Exception:  # a status hint only ("queued" instead of "running"), never a job outcome
            return False

    # ---- queue ----------------------------------------------------------------------------------
    def enqueue(self, message: dict[str, Any]) -> None:
        try:
            client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message))
        except (ClientError, BotoCoreError) as exc:
            raise transient("storage_error", f"could not queue the job: {exc}") from None

    # ---- S3 -------------------------------------------------------------------------------------
    def put_input(self, bucket: str, key: str, data: bytes, content_type: str) -> str | None:
        try:
            response = client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise transient("storage_error", f"could not store the input image: {exc}") from None
        return response.get("VersionId")

    def delete_input(self, bucket: str, key: str) -> None:
        """Best effort (a rejected request leaves nothing behind; the bucket's lifecycle is the backstop)."""
        with contextlib.suppress(ClientError, BotoCoreError):
            client("s3").delete_object(Bucket=bucket, Key=key)

    def get_object(self, bucket: str, key: str) -> bytes | None:
        try:
            return client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES:
                return None
            raise transient("storage_error", f"could not read s3://{bucket}/{key}: {exc}") from None
        except BotoCoreError as exc:
            raise transient("storage_error", f"could not read s3://{bucket}/{key}: {exc}") from None

    def record(self, bucket: str, key: str) -> dict[str, Any] | None:
        raw = self.get_object(bucket, key)
        return json.loads(raw) if raw else None

    @cached_property
    def presigner(self):
        """SigV4 presigning (required for SSE-KMS objects and every region launched since 2014)."""
        from botocore.config import Config

        from .clients import _session

        return _session().client("s3", config=Config(signature_version="s3v4"))

    def presign_get(self, bucket: str, key: str) -> str:
        return self.presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                   ExpiresIn=self.presign_seconds)

    def presign_put(self, bucket: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        params = {"Bucket": bucket, "Key": key, "ContentType": content_type, "Metadata": metadata}
        return self.presigner.generate_presigned_url("put_object", Params=params, ExpiresIn=self.presign_seconds)
