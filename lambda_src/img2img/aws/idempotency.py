"""Powertools idempotency on DynamoDB as the core's Guard.

The key is what the job saw (bucket, key, image and sidecar versions, parameter hash), never the SQS
message id, so duplicate deliveries and the sidecar/image double trigger generate once. A job that
is already running elsewhere is a transient condition: the message comes back and finds the result.
"""
from __future__ import annotations

from typing import Any, Callable

from aws_lambda_powertools.utilities.idempotency import (DynamoDBPersistenceLayer, IdempotencyConfig,
                                                         idempotent_function)
from aws_lambda_powertools.utilities.idempotency.exceptions import (IdempotencyAlreadyInProgressError,
                                                                    IdempotencyPersistenceLayerError)

from ..core.errors import transient
from .clients import client


class DynamoDBGuard:
    def __init__(self, table_name: str, ttl_seconds: int):
        self.config = IdempotencyConfig(expires_after_seconds=ttl_seconds, raise_on_no_idempotency_key=True)
        persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client("dynamodb"))

        @idempotent_function(data_keyword_argument="job_key", persistence_store=persistence, config=self.config,
                             key_prefix="img2img-job")
        def run_once(job_key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            return work()

        self._run_once = run_once

    def register_lambda_context(self, context: Any) -> None:
        self.config.register_lambda_context(context)

    def once(self, key: dict[str, Any], work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return self._run_once(job_key=key, work=work)
        except IdempotencyAlreadyInProgressError:
            raise transient("in_progress", "the same job is running in another invocation") from None
        except IdempotencyPersistenceLayerError as exc:
            raise transient("storage_error", f"the idempotency table is unavailable: {exc}") from None
