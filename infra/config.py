"""Typed deployment configuration, read from CDK context (cdk.json or `-c key=value`).

Pure Python (no aws_cdk import) so the local stack builds the very same resources and Lambda
environment from it. What the worker reads too (defaults, numeric ranges, output formats) comes from the
runtime package (img2img.settings, img2img.limits, img2img.core.formats); the infrastructure-only knobs
are stated here, in `INFRA_LIMITS` and the field list.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from img2img.core.formats import OUTPUT_FORMATS
from img2img.core.keys import IMAGE_SUFFIXES, SIDECAR_SUFFIX  # one list for S3 filters and the worker
from img2img.limits import LIMITS, Limit, either
from img2img.operations import BY_NAME, IMAGE_TO_IMAGE, default_models, normal_name
from img2img.settings import DEFAULT_MODEL_ID, Settings
from infra.regions import DEFAULT_BEDROCK_REGION, serving_all, unavailable

__all__ = ["IMAGE_SUFFIXES", "INFRA_LIMITS", "SIDECAR_SUFFIX", "ConfigError", "PipelineConfig",
           "notification_suffixes"]

SDXL_MODEL_ID = "stability.stable-diffusion-xl-v1"
# The text model that translates prompts (docs/parameters.md#prompt-language): Amazon Nova 2 Lite through the
# `us.` profile (current generation, among Bedrock's cheapest text models, multilingual, Converse; reached
# from the same us. regions as the Image Services). Check its lifecycle with `img2img doctor`.
DEFAULT_TRANSLATION_MODEL_ID = "us.amazon.nova-2-lite-v1:0"

# Numeric knobs of the infrastructure only (the worker never reads them): default and allowed range.
INFRA_LIMITS: dict[str, Limit] = {
    # Concurrency: at most this many Bedrock requests in flight across the whole pipeline.
    "bedrock_max_concurrency": Limit(8, 1, 1000),
    "batch_size": Limit(4, 1, 10),
    "batch_window_seconds": Limit(1, 0, 300),
    "worker_memory_mb": Limit(1024, 256, 10240),
    "queue_age_alarm_seconds": Limit(1800, 60, 14 * 24 * 3600, "SQS keeps messages at most 14 days"),
    "bedrock_latency_alarm_ms": Limit(90_000, 1000, 900_000),
    "filter_rate_alarm_percent": Limit(25, 1, 100),
    "event_archive_days": Limit(0, 0, 3650, "0: no archive"),
    "api_throttle_rate_limit": Limit(20, 1, 10000),  # requests per second, per stage
    "api_throttle_burst_limit": Limit(40, 1, 5000),
    "api_memory_mb": Limit(1024, 128, 10240),
}


# The data buckets' lifecycle rules (infra/storage.py; the local stack applies them too).
NONCURRENT_VERSION_EXPIRATION_DAYS = 30
ABORT_INCOMPLETE_MULTIPART_DAYS = 7
# The worker checkpoints model answers under <outputPrefix>_staging/ until their job's record is stored;
# a checkpoint older than this belongs to a job that has long ended (or died): expire it, all versions.
STAGING_EXPIRATION_DAYS = 2

# The direct-invoke function's share of bedrockMaxConcurrency: 1/DIRECT_SHARE (at least one call).
DIRECT_SHARE = 4
# Concurrent invocations the API keeps for its quick routes (status, uploads, queued jobs: well under a
# second each) beside the sync waits.
API_QUICK_ROUTES_CONCURRENCY = 10


def _default(name: str) -> int:
    return (INFRA_LIMITS.get(name) or LIMITS[name]).default


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
    # Where the functions call Bedrock (infra/regions.py): the region that serves the default models;
    # empty: the stack's region. Checked against the configured models at synth (check_bedrock_region).
    bedrock_region: str = DEFAULT_BEDROCK_REGION
    # The Image Services operations enabled, each with its model id (context: "all", "none", a list of
    # names or an object name -> model id; see _as_operations). Granted in IAM, allowed in the worker.
    operations: dict = field(default_factory=default_models)
    # Prompts not in English are translated by this Bedrock text model first; empty: sent as written.
    translation_model_id: str = DEFAULT_TRANSLATION_MODEL_ID
    # Requests per minute per model id, shared by every sandbox (lambda_src/img2img/core/quota.py); a
    # "default" entry covers models not listed. Non-empty: the stack creates the quota table. Empty: no
    # limiter (Bedrock's throttling and the queue's back-off only). docs/deploy.md#per-model-quotas
    model_quotas: dict = field(default_factory=dict)
    default_prompt: str = ""
    default_params: dict = field(default_factory=dict)
    output_format: str = Settings.output_format
    output_prefix: str = ""
    excluded_prefixes: tuple[str, ...] = ()
    max_input_bytes: int = _default("max_input_bytes")
    # The estimated model cost (USD) above which a bulk job needs acknowledgeCost (API, event) or --yes.
    bulk_max_cost_usd: int = _default("bulk_max_cost_usd")
    max_input_pixels: int = _default("max_input_pixels")
    sidecar_grace_seconds: int = _default("sidecar_grace_seconds")
    bedrock_max_concurrency: int = _default("bedrock_max_concurrency")
    batch_size: int = _default("batch_size")
    batch_window_seconds: int = _default("batch_window_seconds")
    max_receive_count: int = _default("max_receive_count")
    worker_memory_mb: int = _default("worker_memory_mb")
    worker_timeout_seconds: int = 360  # its floor depends on the Bedrock timeouts: see validate()
    architecture: str = "arm64"
    python_version: str = "3.12"
    log_level: str = "INFO"
    log_retention_days: int = 30
    removal_policy: str = "retain"
    encryption: str = "s3-managed"
    # C2PA Content Credentials (docs/provenance.md). `c2paKey`: "create" (the stack makes an ECC_NIST_P256
    # KMS signing key), "none" (no manifests; the XMP marking stays), or an existing key's ARN. Outputs are
    # signed once `c2paCertificateChain` names the chain that certifies the key: an SSM parameter (name or
    # ARN) or a Secrets Manager secret ARN holding the PEM chain, leaf first.
    c2pa_key: str = "create"
    c2pa_certificate_chain: str = ""
    c2pa_timestamp_url: str = ""
    alarm_email: str = ""
    alarm_topic_arn: str = ""
    idempotency_ttl_seconds: int = _default("idempotency_ttl_seconds")
    service_name: str = "bedrock-img2img"
    metrics_namespace: str = "BedrockImg2Img"
    # Reserve concurrency for the API and direct-invoke functions (api_/direct_reserved_concurrency).
    # Lambda keeps 100 of the account's quota unreserved: accounts whose quota is lower (new accounts
    # can start at 10) cannot deploy a reservation; `false` deploys without one.
    reserve_concurrency: bool = True
    # Infrastructure-only knobs (not part of the worker's environment).
    queue_age_alarm_seconds: int = _default("queue_age_alarm_seconds")  # the oldest job waited longer
    bedrock_latency_alarm_ms: int = _default("bedrock_latency_alarm_ms")  # Bedrock p90 latency above
    filter_rate_alarm_percent: int = _default("filter_rate_alarm_percent")  # share content-filtered
    event_archive_days: int = _default("event_archive_days")  # > 0: archive pipeline events on the bus
    # Buckets that already exist (same account and region): the pipeline mounts on them instead of creating
    # its own (docs/deploy.md "Existing buckets"). Empty: the stack creates the bucket.
    input_bucket_name: str = ""
    output_bucket_name: str = ""
    # Bulk jobs (docs/bulk.md): other buckets a manifest may name (the worker may read them, S3 Batch
    # Operations may read inventory reports in them); the worker's IMG2IMG_BULK_SOURCE_BUCKETS.
    bulk_source_buckets: tuple[str, ...] = ()
    # Entry points (docs/api.md, docs/events.md).
    ingest_mode: str = "s3-notifications"  # or "eventbridge": input bucket -> EventBridge rule -> job queue
    api_auth: str = "iam"  # "iam" (SigV4) or "api-key" (API keys + usage plan)
    api_throttle_rate_limit: int = _default("api_throttle_rate_limit")
    api_throttle_burst_limit: int = _default("api_throttle_burst_limit")
    api_cors_origins: tuple[str, ...] = ()  # empty: no CORS; ["*"] or exact origins
    api_memory_mb: int = _default("api_memory_mb")
    api_prefix: str = Settings.api_prefix
    api_upload_prefix: str = Settings.api_upload_prefix
    api_sync_budget_seconds: int = _default("api_sync_budget_seconds")
    api_presign_seconds: int = _default("api_presign_seconds")

    # ---- derived -------------------------------------------------------------------------------
    @property
    def model_ids(self) -> tuple[str, ...]:
        """Every model a job may reach: image-to-image's and the enabled operations'. IAM grants exactly
        these (infra/worker.py) and the worker allows exactly these (IMG2IMG_ALLOWED_MODEL_IDS)."""
        return tuple(dict.fromkeys((self.model_id, *self.additional_model_ids, *self.operations.values())))

    @property
    def invoked_model_ids(self) -> tuple[str, ...]:
        """Every model the functions call: the image models and the translation model (IAM, region check)."""
        return tuple(dict.fromkeys((*self.model_ids, *([self.translation_model_id] if self.translation_model_id
                                                       else []))))

    @property
    def batch_concurrency(self) -> int:
        """Records of one batch processed at once by a worker invocation."""
        return self.batch_size

    # ---- the Bedrock budget (bedrockMaxConcurrency) split between the entry points that call it ----
    @property
    def direct_reserved_concurrency(self) -> int:
        """Reserved concurrency of the direct-invoke function (one job, one Bedrock call at a time each):
        a quarter of the budget, at least one."""
        return max(1, self.bedrock_max_concurrency // DIRECT_SHARE)

    @property
    def worker_bedrock_share(self) -> int:
        """The budget's rest, the worker's: its SQS event source is sized from it."""
        return max(1, self.bedrock_max_concurrency - self.direct_reserved_concurrency)

    @property
    def event_source_max_concurrency(self) -> int:
        """Lambda invocations the SQS event source may run at once (Lambda's minimum is 2)."""
        return max(2, math.ceil(self.worker_bedrock_share / self.batch_concurrency))

    @property
    def api_reserved_concurrency(self) -> int:
        """Reserved concurrency of the API function. It never calls Bedrock; its sync route waits while the
        worker runs the job, and the worker runs about bedrockMaxConcurrency jobs at once, so more waiting
        requests than that would mostly run out their budget: the budget plus room for the quick routes."""
        return self.bedrock_max_concurrency + API_QUICK_ROUTES_CONCURRENCY

    @property
    def bedrock_ceiling(self) -> int:
        """The most Bedrock calls the stack can have in flight: the worker's invocations times the records
        each runs at once, plus the direct function's reservation (Lambda's minimum of 2 event-source
        invocations can put this above bedrockMaxConcurrency when the budget is small)."""
        return self.event_source_max_concurrency * self.batch_concurrency + self.direct_reserved_concurrency

    @property
    def bedrock_read_timeout(self) -> int:
        """Seconds one Bedrock image call may take (not a context key: the worker's default)."""
        return LIMITS["bedrock_read_timeout"].default

    @property
    def bedrock_max_attempts(self) -> int:
        """Attempts per Bedrock call, retries included (not a context key: the worker's default); two read
        timeouts still fit the function timeout (see validate)."""
        return LIMITS["bedrock_max_attempts"].default

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        """AWS's advice: at least 6x the function timeout (plus the batching window)."""
        return 6 * self.worker_timeout_seconds + self.batch_window_seconds

    @property
    def signs_c2pa(self) -> bool:
        """Outputs carry a signed C2PA manifest (a key and the chain that certifies it)."""
        return self.c2pa_key != "none" and bool(self.c2pa_certificate_chain)

    def worker_settings(self, *, input_bucket: str, output_bucket: str, idempotency_table: str,
                        job_queue_url: str, event_bus_name: str, c2pa_kms_key_id: str = "",
                        quota_table: str = "") -> Settings:
        """The worker's settings for concrete (or CDK token) resource names."""
        return Settings(
            input_bucket=input_bucket,
            output_bucket=output_bucket,
            output_prefix=self.output_prefix,
            excluded_prefixes=self.worker_excluded_prefixes,
            idempotency_table=idempotency_table,
            quota_table=quota_table if self.model_quotas else "",
            model_quotas=dict(self.model_quotas) if quota_table else {},
            job_queue_url=job_queue_url,
            event_bus_name=event_bus_name,
            model_id=self.model_id,
            bedrock_region=self.bedrock_region,
            allowed_model_ids=self.model_ids,
            operation_models=dict(self.operations),
            default_prompt=self.default_prompt,
            default_params=dict(self.default_params),
            output_format=self.output_format,
            max_input_bytes=self.max_input_bytes,
            bulk_max_cost_usd=self.bulk_max_cost_usd,
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
            translation_model_id=self.translation_model_id,
            bulk_source_buckets=self.bulk_source_buckets,
            c2pa_kms_key_id=c2pa_kms_key_id if self.signs_c2pa else "",
            c2pa_certificate_chain=self.c2pa_certificate_chain if self.signs_c2pa and c2pa_kms_key_id else "",
            c2pa_timestamp_url=self.c2pa_timestamp_url if self.signs_c2pa and c2pa_kms_key_id else "",
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
    def from_context(cls, context: Mapping[str, Any]) -> PipelineConfig:
        """Build from CDK context; unknown `img2img`-style keys are ignored, bad values raise."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = _camel(f.name)
            if key not in context or context[key] is None:
                continue
            default = f.default_factory() if f.default is MISSING else f.default
            values[f.name] = _coerce(key, context[key], _FIELD_PARSERS.get(f.name, _PARSERS[type(default)]))
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def need(ok: bool, key: str, allowed: str) -> None:
            if not ok:
                raise ConfigError(f"context {_camel(key)}={getattr(self, key)!r} is invalid: {allowed}")

        need(bool(_MODEL_ID.match(self.model_id)), "model_id", "a Bedrock model id, inference profile id or ARN")
        need(not self.translation_model_id or bool(_MODEL_ID.match(self.translation_model_id)),
             "translation_model_id", "empty (no translation) or a Bedrock text model id, inference profile or ARN")
        for mid in self.additional_model_ids:
            if not _MODEL_ID.match(mid):
                raise ConfigError(f"context additionalModelIds has {mid!r}: not a Bedrock model id")
        unknown = [name for name in self.operations if name not in BY_NAME]
        if unknown:
            raise ConfigError(f"context operations names unknown operations {unknown}: known are "
                              f"{', '.join(BY_NAME)} ({IMAGE_TO_IMAGE} is set by modelId/additionalModelIds)")
        for name, mid in self.operations.items():
            if not isinstance(mid, str) or not _MODEL_ID.match(mid):
                raise ConfigError(f"context operations has {mid!r} for {name}: not a Bedrock model id, "
                                  "inference profile id or ARN")
        need(self.output_format in OUTPUT_FORMATS, "output_format", either(OUTPUT_FORMATS))
        from img2img.core.quota import Budgets, QuotaConfigError

        try:
            Budgets.from_config(self.model_quotas)
        except QuotaConfigError as exc:
            raise ConfigError(f"context modelQuotas is invalid: {exc} (an object model id -> requests per "
                              "minute, \"default\" for the models not listed)") from None
        from img2img.core.errors import JobError
        from img2img.core.params import deployment_layer

        try:  # the same check the worker applies: unknown fields would fail every job at run time
            deployment_layer(self.model_id, self.output_format, self.default_prompt, dict(self.default_params))
        except JobError as exc:
            raise ConfigError(f"context defaultParams is invalid: {exc.message}") from None
        for name, limit in NUMERIC_LIMITS.items():
            need(limit.allows(getattr(self, name)), name, limit.allowed)
        floor = self.bedrock_read_timeout * self.bedrock_max_attempts + 30
        need(floor <= self.worker_timeout_seconds <= 900, "worker_timeout_seconds",
             f"{floor} .. 900 (room for {self.bedrock_max_attempts} Bedrock attempts of up to "
             f"{self.bedrock_read_timeout} s each: botocore retries read timeouts)")
        need(self.architecture in ("arm64", "x86_64"), "architecture", "arm64 or x86_64")
        need(self.python_version in ("3.12", "3.13"), "python_version", "3.12 or 3.13")
        need(self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"), "log_level", "DEBUG, INFO, WARNING or ERROR")
        need(self.log_retention_days in RETENTION_DAYS, "log_retention_days",
             f"one of CloudWatch's retention periods {sorted(RETENTION_DAYS)}")
        need(self.removal_policy in ("retain", "destroy"), "removal_policy", "retain or destroy")
        need(self.encryption in ("s3-managed", "kms"), "encryption", "s3-managed or kms")
        need(self.c2pa_key in ("create", "none") or bool(_KMS_KEY_ARN.match(self.c2pa_key)), "c2pa_key",
             "create, none, or the ARN of an asymmetric ECC_NIST_P256 SIGN_VERIFY KMS key")
        need(not self.c2pa_certificate_chain or bool(_CHAIN_REFERENCE.match(self.c2pa_certificate_chain)),
             "c2pa_certificate_chain", "an SSM parameter name (/path/name) or ARN, or a Secrets Manager secret ARN")
        need(not (self.c2pa_certificate_chain and self.c2pa_key == "none"), "c2pa_certificate_chain",
             "empty when c2paKey=none (nothing would sign with it)")
        need(not self.c2pa_timestamp_url or self.c2pa_timestamp_url.startswith(("http://", "https://")),
             "c2pa_timestamp_url", "empty or an RFC 3161 timestamp authority URL")
        need(not self.alarm_email or bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.alarm_email)),
             "alarm_email", "an e-mail address")
        need(not self.alarm_topic_arn or self.alarm_topic_arn.startswith("arn:"), "alarm_topic_arn", "an SNS topic ARN")
        need(all(not p.startswith("/") for p in self.excluded_prefixes), "excluded_prefixes",
             "key prefixes without a leading '/'")
        need(not self.output_prefix.startswith("/"), "output_prefix", "a key prefix without a leading '/'")
        need(not self.bedrock_region or bool(_REGION.match(self.bedrock_region)), "bedrock_region",
             "empty (the stack's region) or a region name like us-west-2")
        need(bool(_NAME.match(self.service_name)), "service_name", "1-64 characters of A-Z a-z 0-9 . _ -")
        need(bool(_NAME.match(self.metrics_namespace)), "metrics_namespace", "1-64 characters of A-Z a-z 0-9 . _ -")
        need(self.ingest_mode in ("s3-notifications", "eventbridge"), "ingest_mode", "s3-notifications or eventbridge")
        for key in ("input_bucket_name", "output_bucket_name"):
            value = getattr(self, key)
            need(not value or (bool(_BUCKET.match(value)) and ".." not in value), key,
                 "empty (the stack creates the bucket) or an existing bucket's name (3-63 characters of a-z 0-9 . -)")
        need(all(bool(_BUCKET.match(b)) and ".." not in b for b in self.bulk_source_buckets), "bulk_source_buckets",
             "bucket names (3-63 characters of a-z 0-9 . -) that bulk manifests may name")
        need(not self.output_bucket_name or self.output_bucket_name not in self.bulk_source_buckets,
             "bulk_source_buckets", "buckets other than outputBucketName")
        need(not self.input_bucket_name or self.output_bucket_name != self.input_bucket_name, "output_bucket_name",
             "a bucket other than inputBucketName: outputs written to the input bucket would start new jobs")
        need(self.api_auth in ("iam", "api-key"), "api_auth", "iam or api-key")
        need(all(o == "*" or o.startswith(("https://", "http://")) for o in self.api_cors_origins),
             "api_cors_origins", "'*' or origins like https://app.example.com")
        for key in ("api_prefix", "api_upload_prefix"):
            value = getattr(self, key)
            need(bool(re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/", value)), key,
                 "a key prefix ending in '/', like api/")
        need(self.api_prefix != self.api_upload_prefix, "api_upload_prefix", "a prefix other than apiPrefix")

    def check_bedrock_region(self, stack_region: str | None) -> str | None:
        """The region Bedrock is called in, after checking it can invoke every configured model.

        `stack_region` is None when the stack is environment-agnostic; then, with `bedrockRegion` empty,
        nothing can be checked and None is returned."""
        region = self.bedrock_region or stack_region
        if region is None:
            return None
        missing = unavailable(self.invoked_model_ids, region)
        if missing:
            where = (f"bedrockRegion={region}" if self.bedrock_region
                     else f"the stack's region {region} (bedrockRegion is empty)")
            models = ", ".join(f"{mid} (offered in {', '.join(r)})" for mid, r in missing.items())
            common = serving_all(self.invoked_model_ids)
            fix = (f"set -c bedrockRegion={common[0]} (the functions then call Bedrock there) or deploy there"
                   if common else "no single region serves all of them: drop one")
            raise ConfigError(f"{where} cannot invoke {models}: {fix}; or remove the model from modelId, "
                              "additionalModelIds, operations or translationModelId")
        return region

    def as_context(self) -> dict[str, Any]:
        """Context that rebuilds this config (cdk.json's form: `operations` is "all" when it is the default)."""
        context = {_camel(k): (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        if self.operations == default_models():
            context["operations"] = ALL_OPERATIONS
        return context


# Every numeric context key with a range: the worker's own (same objects as img2img.settings checks) and
# the infrastructure's.
NUMERIC_LIMITS: dict[str, Limit] = {
    **{f.name: LIMITS[f.name] for f in fields(PipelineConfig) if f.name in LIMITS},
    **INFRA_LIMITS,
}
_KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
_CHAIN_REFERENCE = re.compile(r"^(/[A-Za-z0-9_.\-/]+|[A-Za-z0-9_.\-]+|arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter/"
                              r"[A-Za-z0-9_.\-/]+|arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+)$")
_MODEL_ID = re.compile(r"^(arn:aws[a-z-]*:bedrock:[a-z0-9-]*:\d{0,12}:[a-z-]+/[A-Za-z0-9._:/-]+"
                       r"|[a-z0-9-]+(\.[A-Za-z0-9_-]+)+(:\d+)?(:[0-9a-z]+)?)$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# CloudWatch Logs' retention periods (days) and their aws_logs.RetentionDays member names.
RETENTION_DAYS = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS",
    1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return value.lower() == "true"
    return bool(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number")
    if isinstance(value, str) and not re.fullmatch(r"\s*-?\d+\s*", value):
        raise ValueError("expected a whole number")
    return int(value)


def _as_strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # a JSON list, or comma-separated
        value = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _as_object(value: Any) -> dict:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


ALL_OPERATIONS, NO_OPERATIONS = "all", "none"


def _as_operations(value: Any) -> dict:
    """`operations`: "all", "none", names (a list, JSON array or `a,b`: their default `us.` models) or an
    object name -> model id. Names are normalised (`Remove_Background`); validate() checks them."""
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in (ALL_OPERATIONS, NO_OPERATIONS, ""):
            return default_models() if text.lower() == ALL_OPERATIONS else {}
        value = json.loads(text) if text.startswith(("[", "{")) else [v for v in text.split(",") if v.strip()]
    if isinstance(value, dict):
        return {normal_name(str(name)): mid for name, mid in value.items()}
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        defaults = default_models()
        return {normal_name(v): defaults.get(normal_name(v), "") for v in value}
    raise ValueError('expected "all", "none", a list of operation names or an object name -> model id')


def _as_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


# The parser of a field, by the type of its default.
_PARSERS = {bool: _as_bool, int: _as_int, tuple: _as_strings, dict: _as_object, str: _as_string}
# Fields whose context forms are richer than their type.
_FIELD_PARSERS = {"operations": _as_operations}


def _coerce(key: str, value: Any, parse: Any) -> Any:
    """`-c key=value` passes strings: turn them into the field's type, or fail with the key's name."""
    try:
        return parse(value)
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"context {key}={value!r} is invalid: {exc}") from None
