"""SQS as the core's Scheduler: a delayed message brings a job back later (the sidecar grace period),
and a failed message's visibility is shortened so a transient fault is retried after a back-off."""
from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core.errors import transient
from .clients import client


class SqsScheduler:
    def __init__(self, queue_url: str, sqs=None):
        self.queue_url = queue_url
        self._sqs = sqs

    @property
    def sqs(self):
        if self._sqs is None:
            self._sqs = client("sqs")
        return self._sqs

    def defer(self, message: dict[str, Any], delay_seconds: int) -> None:
        try:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message),
                                  DelaySeconds=max(0, min(900, delay_seconds)))
        except (ClientError, BotoCoreError) as exc:
            raise transient("storage_error", f"could not schedule the sidecar check: {exc}") from None

    def retry_later(self, receipt_handle: str, delay_seconds: int) -> bool:
        """Make a failed message visible again after `delay_seconds` (False: the queue's timeout applies)."""
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle,
                                               VisibilityTimeout=max(0, min(43200, delay_seconds)))
            return True
        except (ClientError, BotoCoreError):
            return False
