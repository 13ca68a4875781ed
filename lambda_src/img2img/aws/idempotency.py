"""Powertools idempotency on DynamoDB, configured in one place, and the core's Guard built on it.

Three users share the table, each under its own key prefix: the worker's guard (`img2img-job#…`, the
key is what the job saw: bucket, key, image and sidecar versions, parameter hash, never the SQS message
id, so duplicate deliveries and the sidecar/image double trigger generate once), the HTTP API's
Idempotency-Key answers (`img2img-api#…`) and the API's job-status read of the worker's items.
A job that is already running elsewhere is a transient condition: the message comes back and finds
the result.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyItemNotFoundError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS

from ..core.errors import transient
from ..tables import PARTITION_KEY, TTL_ATTRIBUTE
from .clients import client

JOB_KEY_PREFIX = "img2img-job"  # the worker's guard: one item per job (the API reads it for `running`)
API_KEY_PREFIX = "img2img-api"  # the HTTP API's Idempotency-Key answers


class Idempotency:
    """One Powertools configuration: table, TTL, key prefix (and which part of the data is the key)."""

    def __init__(self, table_name: str, ttl_seconds: int, key_prefix: str, event_key_jmespath: str = ""):
        self.key_prefix = key_prefix
        self.config = IdempotencyConfig(expires_after_seconds=ttl_seconds, event_key_jmespath=event_key_jmespath,
                                        raise_on_no_idempotency_key=True)
        self.persistence = DynamoDBPersistenceLayer(table_name=table_name, key_attr=PARTITION_KEY,
                                                    expiry_attr=TTL_ATTRIBUTE, boto3_client=client("dynamodb"))

    def register_lambda_context(self, context: Any) -> None:
        self.config.register_lambda_context(context)

    def once_function(self) -> Callable[..., dict[str, Any]]:
        """`run(key=<dict>, work=<callable>)`: work() once per key; its result is remembered."""

        @idempotent_function(data_keyword_argument="key", persistence_store=self.persistence, config=self.config,
                             key_prefix=self.key_prefix)
        def run(key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            return work()

        return run

    def status(self, key: dict[str, Any]) -> str | None:
        """The item's status (INPROGRESS, COMPLETED, ...) or None when there is none (one GetItem)."""
        self.persistence.configure(self.config, key_prefix=self.key_prefix)
        try:
            return self.persistence.get_record(key).status
        except IdempotencyItemNotFoundError:
            return None

    def remembered(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The result kept for this key, or None (no item, still in progress, or expired): one GetItem."""
        self.persistence.configure(self.config, key_prefix=self.key_prefix)
        try:
            record = self.persistence.get_record(key)
        except IdempotencyItemNotFoundError:
            return None
        return record.response_json_as_dict() if record.status == STATUS_CONSTANTS["COMPLETED"] else None


class DynamoDBGuard:
    """The core's Guard: a job's work runs once per idempotency key."""

    def __init__(self, table_name: str, ttl_seconds: int):
        self.idempotency = Idempotency(table_name, ttl_seconds, JOB_KEY_PREFIX)
        self.config = self.idempotency.config
        self._run_once = self.idempotency.once_function()

    def register_lambda_context(self, context: Any) -> None:
        self.idempotency.register_lambda_context(context)

    def once(self, key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return self._run_once(key=key, work=work)
        except IdempotencyAlreadyInProgressError:
            raise transient("in_progress", "the same job is running in another invocation") from None
        except IdempotencyPersistenceLayerError as exc:
            raise transient("storage_error", f"the idempotency table is unavailable: {exc}") from None
