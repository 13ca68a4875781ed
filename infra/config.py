"""Typed deployment configuration, read from CDK context (cdk.json or `-c key=value`).

Pure Python (no aws_cdk import) so the local stack builds the very same resources and Lambda
environment from it: one source of truth for names, limits and defaults.
"""
from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lambda_src"))
from img2img.settings import DEFAULT_MODEL_ID, Settings  # noqa: E402

SDXL_MODEL_ID = "stability.stable-diffusion-xl-v1"
from img2img.core.keys import IMAGE_SUFFIXES, SIDECAR_SUFFIX  # noqa: E402,F401  (one list for S3 filters and the worker)


def notification_suffixes() -> tuple[str, ...]:
    """Every suffix the input bucket notifies on (S3 filters are case-sensitive), in a stable order.

    Used by the CDK ingest construct and the local stack alike."""
    return tuple(dict.fromkeys([*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES), SIDECAR_SUFFIX]))


class ConfigError(ValueError):
    """A context value is invalid; raised at synth time with the key and what is allowed."""


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a user tunes. Context keys are these field names in camelCase."""

    model_id: str = DEFAULT_MODEL_ID
    # Further models a job may select with model_id (granted in IAM too). SDXL stays listed: it is the
    # contract users know, even though Bedrock retired it.
    additional_model_ids: tuple[str, ...] = (SDXL_MODEL_ID,)
    bedrock_region: str = ""  # empty: the stack's region
    default_prompt: str = ""
    default_params: dict = field(default_factory=dict)
    output_format: str = "png"
    output_prefix: str = ""
    excluded_prefixes: tuple[str, ...] = ()
    max_input_bytes: int = 30 * 1024 * 1024
    max_input_pixels: int = 40_000_000
    sidecar_grace_seconds: int = 120
    # Concurrency: at most this many Bedrock requests in flight across the whole pipeline.
    bedrock_max_concurrency: int = 8
    batch_size: int = 4
    batch_window_seconds: int = 1
    max_receive_count: int = 5
    worker_memory_mb: int = 1024
    worker_timeout_seconds: int = 360
    architecture: str = "arm64"
    python_version: str = "3.12"
    log_level: str = "INFO"
    log_retention_days: int = 30
    removal_policy: str = "retain"
    encryption: str = "s3-managed"
    alarm_email: str = ""
    alarm_topic_arn: str = ""
    idempotency_ttl_seconds: int = 7 * 24 * 3600
    service_name: str = "bedrock-img2img"
    metrics_namespace: str = "BedrockImg2Img"
    # Infrastructure-only knobs (not part of the worker's environment).
    queue_age_alarm_seconds: int = 1800  # alarm when the oldest job waited longer than this
    bedrock_latency_alarm_ms: int = 90_000  # alarm when Bedrock p90 latency exceeds this
    filter_rate_alarm_percent: int = 25  # alarm when this share of outputs is content-filtered
    event_archive_days: int = 0  # > 0: archive pipeline events on the bus for this many days
    # Entry points (docs/api.md, docs/events.md).
    ingest_mode: str = "s3-notifications"  # or "eventbridge": input bucket -> EventBridge rule -> job queue
    api_auth: str = "iam"  # "iam" (SigV4) or "api-key" (API keys + usage plan)
    api_throttle_rate_limit: int = 20  # requests per second, per stage
    api_throttle_burst_limit: int = 40
    api_cors_origins: tuple[str, ...] = ()  # empty: no CORS; ["*"] or exact origins
    api_memory_mb: int = 1024
    api_prefix: str = "api/"
    api_upload_prefix: str = "uploads/"
    api_sync_budget_seconds: int = 25
    api_presign_seconds: int = 900

    # ---- derived -------------------------------------------------------------------------------
    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.model_id, *self.additional_model_ids)))

    @property
    def batch_concurrency(self) -> int:
        """Records of one batch processed at once by a worker invocation."""
        return self.batch_size

    @property
    def event_source_max_concurrency(self) -> int:
        """Lambda invocations the SQS event source may run at once (Lambda's minimum is 2)."""
        return max(2, math.ceil(self.bedrock_max_concurrency / self.batch_concurrency))

    @property
    def bedrock_read_timeout(self) -> int:
        """Seconds one Bedrock image call may take (they take 30-90 s; the 60 s default is too short)."""
        return 150

    @property
    def bedrock_max_attempts(self) -> int:
        """Attempts per Bedrock call, retries included: a second attempt absorbs a passing throttle, and
        two read timeouts still fit the function timeout. Further retries come from the queue's back-off."""
        return 2

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        """AWS's advice: at least 6x the function timeout (plus the batching window)."""
        return 6 * self.worker_timeout_seconds + self.batch_window_seconds

    def worker_settings(self, *, input_bucket: str, output_bucket: str, idempotency_table: str,
                        job_queue_url: str, event_bus_name: str) -> Settings:
        """The worker's settings for concrete (or CDK token) resource names."""
        return Settings(
            input_bucket=input_bucket,
            output_bucket=output_bucket,
            output_prefix=self.output_prefix,
            excluded_prefixes=self.worker_excluded_prefixes,
            idempotency_table=idempotency_table,
            job_queue_url=job_queue_url,
            event_bus_name=event_bus_name,
            model_id=self.model_id,
            bedrock_region=self.bedrock_region,
            allowed_model_ids=self.model_ids,
            default_prompt=self.default_prompt,
            default_params=dict(self.default_params),
            output_format=self.output_format,
            max_input_bytes=self.max_input_bytes,
            max_input_pixels=self.max_input_pixels,
            sidecar_grace_seconds=self.sidecar_grace_seconds,
            max_receive_count=self.max_receive_count,
            bedrock_read_timeout=self.bedrock_read_timeout,
            bedrock_max_attempts=self.bedrock_max_attempts,
            batch_concurrency=self.batch_concurrency,
            idempotency_ttl_seconds=self.idempotency_ttl_seconds,
            api_prefix=self.api_prefix,
            api_upload_prefix=self.api_upload_prefix,
            api_sync_budget_seconds=self.api_sync_budget_seconds,
            api_presign_seconds=self.api_presign_seconds,
            api_cors_origins=self.api_cors_origins,
        )

    def api_settings(self, **resources: str) -> Settings:
        """The API function's settings: the worker's (same pipeline, same limits, same names)."""
        return self.worker_settings(**resources)

    @property
    def worker_excluded_prefixes(self) -> tuple[str, ...]:
        """What uploads never start by themselves: the configured prefixes plus the API's own inputs."""
        return tuple(dict.fromkeys((*self.excluded_prefixes, self.api_prefix)))

    @property
    def api_timeout_seconds(self) -> int:
        """The API function's timeout: the sync budget plus time to queue the job and answer."""
        return self.api_sync_budget_seconds + 5

    def powertools_env(self) -> dict[str, str]:
        return {
            "POWERTOOLS_SERVICE_NAME": self.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": self.metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": self.log_level,
        }

    # ---- parsing -------------------------------------------------------------------------------
    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "PipelineConfig":
        """Build from CDK context; unknown `img2img`-style keys are ignored, bad values raise."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = _camel(f.name)
            if key not in context or context[key] is None:
                continue
            values[f.name] = _coerce(key, context[key], None if f.default is MISSING else f.default, f.name)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, key: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"context {_camel(key)}={getattr(self, key)!r} is invalid: {allowed}")

        need(bool(_MODEL_ID.match(self.model_id)), "model_id", "a Bedrock model id, inference profile id or ARN")
        for mid in self.additional_model_ids:
            if not _MODEL_ID.match(mid):
                raise ConfigError(f"context additionalModelIds has {mid!r}: not a Bedrock model id")
        need(self.output_format in ("png", "jpeg", "webp"), "output_format", "png, jpeg or webp")
        from img2img.core.errors import JobError
        from img2img.core.params import deployment_layer

        try:  # the same check the worker applies: unknown fields would fail every job at run time
            deployment_layer(self.model_id, self.output_format, self.default_prompt, dict(self.default_params))
        except JobError as exc:
            raise ConfigError(f"context defaultParams is invalid: {exc.message}") from None
        need(1024 <= self.max_input_bytes <= 500 * 1024 * 1024, "max_input_bytes", "1 KiB .. 500 MiB")
        need(4096 <= self.max_input_pixels <= 500_000_000, "max_input_pixels", "4096 .. 500,000,000")
        need(0 <= self.sidecar_grace_seconds <= 900, "sidecar_grace_seconds", "0 .. 900 (an SQS delay)")
        need(1 <= self.bedrock_max_concurrency <= 1000, "bedrock_max_concurrency", "1 .. 1000")
        need(1 <= self.batch_size <= 10, "batch_size", "1 .. 10")
        need(0 <= self.batch_window_seconds <= 300, "batch_window_seconds", "0 .. 300")
        need(1 <= self.max_receive_count <= 1000, "max_receive_count", "1 .. 1000")
        need(256 <= self.worker_memory_mb <= 10240, "worker_memory_mb", "256 .. 10240")
        floor = self.bedrock_read_timeout * self.bedrock_max_attempts + 30
        need(floor <= self.worker_timeout_seconds <= 900, "worker_timeout_seconds",
             f"{floor} .. 900 (room for {self.bedrock_max_attempts} Bedrock attempts of up to "
             f"{self.bedrock_read_timeout} s each: botocore retries read timeouts)")
        need(self.architecture in ("arm64", "x86_64"), "architecture", "arm64 or x86_64")
        need(self.python_version in ("3.12", "3.13"), "python_version", "3.12 or 3.13")
        need(self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"), "log_level", "DEBUG, INFO, WARNING or ERROR")
        need(self.log_retention_days in _RETENTION_DAYS, "log_retention_days",
             f"one of CloudWatch's retention periods {sorted(_RETENTION_DAYS)}")
        need(self.removal_policy in ("retain", "destroy"), "removal_policy", "retain or destroy")
        need(self.encryption in ("s3-managed", "kms"), "encryption", "s3-managed or kms")
        need(not self.alarm_email or bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.alarm_email)),
             "alarm_email", "an e-mail address")
        need(not self.alarm_topic_arn or self.alarm_topic_arn.startswith("arn:"), "alarm_topic_arn", "an SNS topic ARN")
        need(60 <= self.idempotency_ttl_seconds <= 365 * 24 * 3600, "idempotency_ttl_seconds", "60 s .. 1 year")
        need(all(not p.startswith("/") for p in self.excluded_prefixes), "excluded_prefixes",
             "key prefixes without a leading '/'")
        need(not self.output_prefix.startswith("/"), "output_prefix", "a key prefix without a leading '/'")
        need(not self.bedrock_region or bool(_REGION.match(self.bedrock_region)), "bedrock_region",
             "empty (the stack's region) or a region name like us-west-2")
        need(bool(_NAME.match(self.service_name)), "service_name", "1-64 characters of A-Z a-z 0-9 . _ -")
        need(bool(_NAME.match(self.metrics_namespace)), "metrics_namespace", "1-64 characters of A-Z a-z 0-9 . _ -")
        need(60 <= self.queue_age_alarm_seconds <= 14 * 24 * 3600, "queue_age_alarm_seconds",
             "60 .. 1209600 (SQS keeps messages at most 14 days)")
        need(1000 <= self.bedrock_latency_alarm_ms <= 900_000, "bedrock_latency_alarm_ms", "1000 .. 900000")
        need(1 <= self.filter_rate_alarm_percent <= 100, "filter_rate_alarm_percent", "1 .. 100")
        need(0 <= self.event_archive_days <= 3650, "event_archive_days", "0 (no archive) .. 3650")
        need(self.ingest_mode in ("s3-notifications", "eventbridge"), "ingest_mode", "s3-notifications or eventbridge")
        need(self.api_auth in ("iam", "api-key"), "api_auth", "iam or api-key")
        need(1 <= self.api_throttle_rate_limit <= 10000, "api_throttle_rate_limit", "1 .. 10000")
        need(1 <= self.api_throttle_burst_limit <= 5000, "api_throttle_burst_limit", "1 .. 5000")
        need(all(o == "*" or o.startswith(("https://", "http://")) for o in self.api_cors_origins),
             "api_cors_origins", "'*' or origins like https://app.example.com")
        need(128 <= self.api_memory_mb <= 10240, "api_memory_mb", "128 .. 10240")
        for key in ("api_prefix", "api_upload_prefix"):
            value = getattr(self, key)
            need(bool(re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/", value)), key,
                 "a key prefix ending in '/', like api/")
        need(self.api_prefix != self.api_upload_prefix, "api_upload_prefix", "a prefix other than apiPrefix")
        need(1 <= self.api_sync_budget_seconds <= 28, "api_sync_budget_seconds",
             "1 .. 28 (API Gateway's 29 s integration timeout)")
        need(60 <= self.api_presign_seconds <= 7 * 24 * 3600, "api_presign_seconds", "60 .. 604800")

    def as_context(self) -> dict[str, Any]:
        return {_camel(k): (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


_MODEL_ID = re.compile(r"^(arn:aws[a-z-]*:bedrock:[a-z0-9-]*:\d{0,12}:[a-z-]+/[A-Za-z0-9._:/-]+"
                       r"|[a-z0-9-]+(\.[A-Za-z0-9_-]+)+(:\d+)?(:[0-9a-z]+)?)$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_RETENTION_DAYS = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                   2557, 2922, 3288, 3653}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _coerce(key: str, value: Any, default: Any, name: str) -> Any:
    """`-c key=value` passes strings: turn them into the field's type, or fail with the key's name."""
    raw = value  # reported as given, not half-parsed
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false"):
                    raise ValueError("expected true or false")
                return value.lower() == "true"
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected a whole number")
            if isinstance(value, str):
                if not re.fullmatch(r"\s*-?\d+\s*", value):
                    raise ValueError("expected a whole number")
                return int(value)
            return int(value)
        if isinstance(default, tuple) or name in ("additional_model_ids", "excluded_prefixes"):
            if isinstance(value, str):
                value = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of strings")
            return tuple(value)
        if name == "default_params":
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError("expected a JSON object")
            return value
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"context {key}={raw!r} is invalid: {exc}") from None
