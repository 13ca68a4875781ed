"""Builds the pipeline from settings and the AWS edge, once per process (reused across invocations)."""
from __future__ import annotations

from functools import cached_property, lru_cache

from .core.pipeline import Pipeline
from .observability import logger
from .settings import get_settings


def _log(message: str, **fields) -> None:
    logger.info(message, extra=fields)


def _log_exception(message: str, **fields) -> None:
    logger.exception(message, extra=fields)


def _correlate(job_id: str) -> None:
    """Every log line of this record's thread from here on carries the job id (records run in threads)."""
    logger.thread_safe_append_keys(correlation_id=job_id)


@lru_cache(maxsize=1)
def get_pipeline() -> Pipeline:
    from .aws.clients import collector_paused

    with collector_paused():  # boto3's import and the idempotency table's client: built once per process
        return _build()


def _build() -> Pipeline:
    from .aws.bedrock import BedrockInvoker
    from .aws.events import EventBridgePublisher
    from .aws.idempotency import DynamoDBGuard
    from .aws.queue import SqsScheduler
    from .aws.s3 import S3Store
    from .models.registry import adapter_for

    s = get_settings()
    return Pipeline(
        settings=s,
        store=S3Store(),
        registry=adapter_for,
        model=BedrockInvoker(read_timeout=s.bedrock_read_timeout, max_attempts=model_call_attempts(s),
                             region=s.bedrock_region),
        events=EventBridgePublisher(s.event_bus_name) if s.event_bus_name else None,
        scheduler=SqsScheduler(s.job_queue_url) if s.job_queue_url else None,
        guard=DynamoDBGuard(s.idempotency_table, s.idempotency_ttl_seconds) if s.idempotency_table else None,
        log=_log,
        log_exception=_log_exception,
        on_job=_correlate,
        signing=_signing_keys(s),
        translator=_translator(s),
        progress=_BulkProgressOnFirstRow(s.idempotency_table) if s.idempotency_table else None,
        quota=_quota(s),
    )


def model_call_attempts(settings) -> int:
    """botocore's attempts per model call: `bedrockMaxAttempts`, or 1 under the per-model limiter, where
    an in-client retry of a throttle would be a call the limiter never admitted (docs/performance.md §6:
    most of a halved quota's throttles were those retries); the throttle goes back through the limiter
    as a transient fault instead, and lowers the model's shared rate."""
    return 1 if settings.quota_table else settings.bedrock_max_attempts


class _BulkProgressOnFirstRow:
    """The bulk jobs' counters (aws/bulk.py), imported and built by the first bulk row a process sees:
    most jobs belong to no bulk job, and aws/bulk.py with core/bulk.py is ~10 ms of every cold start."""

    def __init__(self, table_name: str):
        self.table_name = table_name

    @cached_property
    def _progress(self):
        from .aws.bulk import DynamoBulkProgress

        return DynamoBulkProgress(self.table_name)

    def __getattr__(self, name: str):
        """Every BulkProgress method (core/ports.py) is the real one's: no second copy of the port."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._progress, name)


def _quota(settings):
    """The per-model request limiter shared by every sandbox, when the deployment has its table."""
    if not settings.quota_table:
        return None
    from .aws.quota import DynamoDBQuota

    return DynamoDBQuota(settings.quota_table, settings.budgets)


def _translator(settings):
    """The Bedrock text model that puts prompts into English, when the deployment names one."""
    if not settings.translation_model_id:
        return None
    from .aws.translator import BedrockTranslator

    return BedrockTranslator(settings.translation_model_id, region=settings.bedrock_region)


def _signing_keys(settings):
    """The deployment's C2PA signing key, when it has one (docs/provenance.md)."""
    if not settings.signs_c2pa:
        return None
    from .aws.signing_keys import KmsSigningKeys

    return KmsSigningKeys(settings.c2pa_kms_key_id, settings.c2pa_certificate_chain, settings.c2pa_timestamp_url)


def pipeline_for(context) -> Pipeline:
    """The process's pipeline, told about this invocation (idempotency expiry uses its remaining time)."""
    pipeline = get_pipeline()
    register = getattr(pipeline.guard, "register_lambda_context", None)
    if register is not None:
        register(context)
    pipeline.time_left = lambda: context.get_remaining_time_in_millis() / 1000
    arn = str(getattr(context, "invoked_function_arn", "") or "").split(":")
    pipeline.account_id = arn[4] if len(arn) > 4 and arn[4].isdigit() else None
    return pipeline
