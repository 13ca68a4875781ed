"""The worker's settings, read once from environment variables.

The CDK stack (infra/config.py) and the local stack write these same variables, so this module is the
one place that names them and their defaults (numeric ones, with their ranges, in limits.py). Nothing here
touches AWS.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

from img2img.core.formats import OUTPUT_FORMATS
from img2img.core.quota import Budgets, QuotaConfigError
from img2img.limits import LIMITS, Limit, either
from img2img.operations import BY_NAME, default_models

DEFAULT_MODEL_ID = "stability.sd3-5-large-v1:0"

# Environment variable for each setting. infra/config.py imports this mapping to build the Lambda's
# environment, and the local stack uses it too: one source of truth for names.
ENV = {
    "input_bucket": "IMG2IMG_INPUT_BUCKET",
    "output_bucket": "IMG2IMG_OUTPUT_BUCKET",
    "output_prefix": "IMG2IMG_OUTPUT_PREFIX",
    "excluded_prefixes": "IMG2IMG_EXCLUDED_PREFIXES",
    "idempotency_table": "IMG2IMG_IDEMPOTENCY_TABLE",
    # Per-model request budgets (core/quota.py): the shared limiter's table (empty: no limiter), and a JSON
    # object model id -> requests per minute, its "default" entry for every model not listed.
    "quota_table": "IMG2IMG_QUOTA_TABLE",
    "model_quotas": "IMG2IMG_MODEL_QUOTAS",
    "job_queue_url": "IMG2IMG_JOB_QUEUE_URL",
    "event_bus_name": "IMG2IMG_EVENT_BUS_NAME",
    "model_id": "IMG2IMG_MODEL_ID",
    "bedrock_region": "IMG2IMG_BEDROCK_REGION",
    "allowed_model_ids": "IMG2IMG_ALLOWED_MODEL_IDS",
    # The Image Services operations this deployment enables, each with its model id (JSON object).
    "operation_models": "IMG2IMG_OPERATION_MODELS",
    "default_prompt": "IMG2IMG_DEFAULT_PROMPT",
    "default_params": "IMG2IMG_DEFAULT_PARAMS",
    "output_format": "IMG2IMG_OUTPUT_FORMAT",
    "max_input_bytes": "IMG2IMG_MAX_INPUT_BYTES",
    "bulk_max_cost_usd": "IMG2IMG_BULK_MAX_COST_USD",
    "max_input_pixels": "IMG2IMG_MAX_INPUT_PIXELS",
    "sidecar_grace_seconds": "IMG2IMG_SIDECAR_GRACE_SECONDS",
    "max_receive_count": "IMG2IMG_MAX_RECEIVE_COUNT",
    "bedrock_read_timeout": "IMG2IMG_BEDROCK_READ_TIMEOUT",
    "bedrock_max_attempts": "IMG2IMG_BEDROCK_MAX_ATTEMPTS",
    "batch_concurrency": "IMG2IMG_BATCH_CONCURRENCY",
    "idempotency_ttl_seconds": "IMG2IMG_IDEMPOTENCY_TTL_SECONDS",
    # The HTTP API (handlers/api.py); the worker reads api_prefix too (it never runs API inputs by upload).
    "api_prefix": "IMG2IMG_API_PREFIX",
    "api_upload_prefix": "IMG2IMG_API_UPLOAD_PREFIX",
    "api_sync_budget_seconds": "IMG2IMG_API_SYNC_BUDGET_SECONDS",
    "api_presign_seconds": "IMG2IMG_API_PRESIGN_SECONDS",
    "api_max_inline_bytes": "IMG2IMG_API_MAX_INLINE_BYTES",
    "api_cors_origins": "IMG2IMG_API_CORS_ORIGINS",
    # Prompts in other languages translated to English by this Bedrock text model (Converse); empty: off.
    "translation_model_id": "IMG2IMG_TRANSLATION_MODEL_ID",
    # C2PA Content Credentials (docs/provenance.md): signing is on when both are set; XMP is always on.
    "c2pa_kms_key_id": "IMG2IMG_C2PA_KMS_KEY_ID",          # an asymmetric ECC_NIST_P256 KMS key
    "c2pa_certificate_chain": "IMG2IMG_C2PA_CERTIFICATE_CHAIN",  # an SSM parameter name or a secret ARN
    "c2pa_timestamp_url": "IMG2IMG_C2PA_TIMESTAMP_URL",    # optional RFC 3161 timestamp authority
    # Bulk jobs (docs/bulk.md): buckets besides the input bucket whose objects a manifest may name.
    "bulk_source_buckets": "IMG2IMG_BULK_SOURCE_BUCKETS",
    # Where bulk jobs submitted by the API or an event run: the enqueue function and the Batch Operations role.
    "bulk_function_arn": "IMG2IMG_BULK_FUNCTION_ARN",
    "bulk_role_arn": "IMG2IMG_BULK_ROLE_ARN",
}


class SettingsError(ValueError):
    """A deployment setting is malformed: a configuration bug, not a job failure."""


def _int(name: str, raw: str, limit: Limit) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{ENV[name]}={raw!r} is not an integer") from None
    if not limit.allows(value):
        raise SettingsError(f"{ENV[name]}={value} is outside {limit.minimum}..{limit.maximum}")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _json_object(name: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{ENV[name]} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{ENV[name]} must be a JSON object")
    return value


def _check_operation_models(models: dict) -> None:
    unknown = sorted(set(models) - set(BY_NAME))
    if unknown:
        raise SettingsError(f"{ENV['operation_models']} names unknown operations {unknown}; known: "
                            f"{', '.join(BY_NAME)}")
    bad = sorted(name for name, model in models.items() if not isinstance(model, str) or not model)
    if bad:
        raise SettingsError(f"{ENV['operation_models']}: the model ids of {bad} must be non-empty strings")


@dataclass(frozen=True)
class Settings:
    output_bucket: str
    input_bucket: str = ""
    output_prefix: str = ""
    excluded_prefixes: tuple[str, ...] = ()
    idempotency_table: str = ""
    quota_table: str = ""
    model_quotas: dict = field(default_factory=dict)  # model id (or "default") -> requests per minute
    job_queue_url: str = ""
    event_bus_name: str = ""
    model_id: str = DEFAULT_MODEL_ID
    bedrock_region: str = ""  # empty: the function's own region
    allowed_model_ids: tuple[str, ...] = ()
    # operation name -> model id, for the enabled Image Services operations (operations.py has all 13).
    operation_models: dict = field(default_factory=default_models)
    default_prompt: str = ""
    default_params: dict = field(default_factory=dict)
    output_format: str = "png"
    # Numbers: defaults and ranges in limits.py (shared with infra/config.py).
    max_input_bytes: int = LIMITS["max_input_bytes"].default
    bulk_max_cost_usd: int = LIMITS["bulk_max_cost_usd"].default
    max_input_pixels: int = LIMITS["max_input_pixels"].default
    sidecar_grace_seconds: int = LIMITS["sidecar_grace_seconds"].default
    max_receive_count: int = LIMITS["max_receive_count"].default
    bedrock_read_timeout: int = LIMITS["bedrock_read_timeout"].default
    bedrock_max_attempts: int = LIMITS["bedrock_max_attempts"].default
    batch_concurrency: int = LIMITS["batch_concurrency"].default
    idempotency_ttl_seconds: int = LIMITS["idempotency_ttl_seconds"].default
    api_prefix: str = "api/"              # input/output keys of API-submitted jobs: api/<job_id>/...
    api_upload_prefix: str = "uploads/"   # presigned browser uploads: uploads/<job_id>/<file name>
    # POST /v1/generations answers 202 (queued) beyond this budget.
    api_sync_budget_seconds: int = LIMITS["api_sync_budget_seconds"].default
    api_presign_seconds: int = LIMITS["api_presign_seconds"].default  # lifetime of presigned GET/PUT URLs
    # Larger results: 303 to a presigned URL (a Lambda response carries at most 6 MB).
    api_max_inline_bytes: int = LIMITS["api_max_inline_bytes"].default
    api_cors_origins: tuple[str, ...] = ()  # origins answered with Access-Control-Allow-Origin
    translation_model_id: str = ""  # empty: prompts go to the image model as written
    c2pa_kms_key_id: str = ""
    c2pa_certificate_chain: str = ""  # SSM parameter (name or ARN) or Secrets Manager secret ARN: PEM, leaf first
    c2pa_timestamp_url: str = ""
    bulk_source_buckets: tuple[str, ...] = ()
    bulk_function_arn: str = ""
    bulk_role_arn: str = ""

    def bulk_readable(self, bucket: str) -> bool:
        """May a bulk job's manifest name objects of this bucket?"""
        return bool(bucket) and (bucket == self.input_bucket or bucket in self.bulk_source_buckets)

    @property
    def budgets(self) -> Budgets:
        return Budgets.from_config(self.model_quotas)

    @property
    def signs_c2pa(self) -> bool:
        return bool(self.c2pa_kms_key_id and self.c2pa_certificate_chain)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        raw = {name: env[var] for name, var in ENV.items() if env.get(var, "") != ""}
        if "output_bucket" not in raw:
            raise SettingsError(f"{ENV['output_bucket']} must be set")
        values: dict = {}
        for name, text in raw.items():
            if name in ("excluded_prefixes", "allowed_model_ids", "api_cors_origins", "bulk_source_buckets"):
                values[name] = _list(text)
            elif name in ("default_params", "operation_models", "model_quotas"):
                values[name] = _json_object(name, text)
            elif name in LIMITS:
                values[name] = _int(name, text, LIMITS[name])
            else:
                values[name] = text
        _check_operation_models(values.get("operation_models", {}))
        try:
            Budgets.from_config(values.get("model_quotas", {}))
        except QuotaConfigError as exc:
            raise SettingsError(f"{ENV['model_quotas']}: {exc}") from None
        if bool(values.get("c2pa_kms_key_id")) != bool(values.get("c2pa_certificate_chain")):
            raise SettingsError(f"{ENV['c2pa_kms_key_id']} and {ENV['c2pa_certificate_chain']} go together: "
                                "set both to sign C2PA manifests, or neither")
        if values.get("output_format", cls.output_format) not in OUTPUT_FORMATS:
            raise SettingsError(f"{ENV['output_format']} must be {either(OUTPUT_FORMATS)}")
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (used by the CDK stack and the local stack)."""
        out: dict[str, str] = {}
        for name, var in ENV.items():
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, dict):
                # operation_models: `{}` (none enabled) differs from unset (all enabled), so it is kept.
                value = json.dumps(value, separators=(",", ":"), sort_keys=True) if value or \
                    name == "operation_models" else ""
            if value != "":
                out[var] = str(value)
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read on first use (not at import: cold start and tests stay cheap)."""
    return Settings.from_env()
