"""The worker's settings, read once from environment variables.

The CDK stack (infra/config.py) and the local stack write these same variables, so this module is the
one place that names them. Nothing here touches AWS.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache

DEFAULT_MODEL_ID = "stability.sd3-5-large-v1:0"

# Environment variable for each setting. infra/config.py imports this mapping to build the Lambda's
# environment, and the local stack uses it too: one source of truth for names.
ENV = {
    "input_bucket": "IMG2IMG_INPUT_BUCKET",
    "output_bucket": "IMG2IMG_OUTPUT_BUCKET",
    "output_prefix": "IMG2IMG_OUTPUT_PREFIX",
    "excluded_prefixes": "IMG2IMG_EXCLUDED_PREFIXES",
    "idempotency_table": "IMG2IMG_IDEMPOTENCY_TABLE",
    "job_queue_url": "IMG2IMG_JOB_QUEUE_URL",
    "event_bus_name": "IMG2IMG_EVENT_BUS_NAME",
    "model_id": "IMG2IMG_MODEL_ID",
    "bedrock_region": "IMG2IMG_BEDROCK_REGION",
    "allowed_model_ids": "IMG2IMG_ALLOWED_MODEL_IDS",
    "default_prompt": "IMG2IMG_DEFAULT_PROMPT",
    "default_params": "IMG2IMG_DEFAULT_PARAMS",
    "output_format": "IMG2IMG_OUTPUT_FORMAT",
    "max_input_bytes": "IMG2IMG_MAX_INPUT_BYTES",
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
}


class SettingsError(ValueError):
    """A deployment setting is malformed: a configuration bug, not a job failure."""


def _int(name: str, raw: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{ENV[name]}={raw!r} is not an integer") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{ENV[name]}={value} is outside {minimum}..{maximum}")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    output_bucket: str
    input_bucket: str = ""
    output_prefix: str = ""
    excluded_prefixes: tuple[str, ...] = ()
    idempotency_table: str = ""
    job_queue_url: str = ""
    event_bus_name: str = ""
    model_id: str = DEFAULT_MODEL_ID
    bedrock_region: str = ""  # empty: the function's own region
    allowed_model_ids: tuple[str, ...] = ()
    default_prompt: str = ""
    default_params: dict = field(default_factory=dict)
    output_format: str = "png"
    max_input_bytes: int = 30 * 1024 * 1024
    max_input_pixels: int = 40_000_000
    sidecar_grace_seconds: int = 120
    max_receive_count: int = 5
    bedrock_read_timeout: int = 150
    bedrock_max_attempts: int = 2
    batch_concurrency: int = 4
    idempotency_ttl_seconds: int = 7 * 24 * 3600
    api_prefix: str = "api/"              # input/output keys of API-submitted jobs: api/<job_id>/...
    api_upload_prefix: str = "uploads/"   # presigned browser uploads: uploads/<job_id>/<file name>
    api_sync_budget_seconds: int = 25     # POST /v1/generations answers 202 (queued) beyond this
    api_presign_seconds: int = 900        # lifetime of presigned GET/PUT URLs
    api_max_inline_bytes: int = 4_000_000  # larger results: 303 to a presigned URL (6 MB Lambda response)
    api_cors_origins: tuple[str, ...] = ()  # origins answered with Access-Control-Allow-Origin

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        raw = {name: env[var] for name, var in ENV.items() if env.get(var, "") != ""}
        if "output_bucket" not in raw:
            raise SettingsError(f"{ENV['output_bucket']} must be set")
        values: dict = {}
        for name, text in raw.items():
            if name in ("excluded_prefixes", "allowed_model_ids", "api_cors_origins"):
                values[name] = _list(text)
            elif name == "default_params":
                try:
                    params = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise SettingsError(f"{ENV[name]} is not JSON: {exc}") from None
                if not isinstance(params, dict):
                    raise SettingsError(f"{ENV[name]} must be a JSON object")
                values[name] = params
            elif name in _INT_LIMITS:
                values[name] = _int(name, text, *_INT_LIMITS[name])
            else:
                values[name] = text
        if values.get("output_format", "png") not in ("png", "jpeg", "webp"):
            raise SettingsError(f"{ENV['output_format']} must be png, jpeg or webp")
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (used by the CDK stack and the local stack)."""
        out: dict[str, str] = {}
        for name, var in ENV.items():
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, dict):
                value = json.dumps(value, separators=(",", ":"), sort_keys=True) if value else ""
            if value != "":
                out[var] = str(value)
        return out


_INT_LIMITS = {
    "max_input_bytes": (1, 500 * 1024 * 1024),
    "max_input_pixels": (4096, 500_000_000),
    # SQS DelaySeconds caps a single deferral at 15 minutes.
    "sidecar_grace_seconds": (0, 900),
    "max_receive_count": (1, 1000),
    "bedrock_read_timeout": (120, 900),
    "bedrock_max_attempts": (1, 10),
    "batch_concurrency": (1, 64),
    "idempotency_ttl_seconds": (60, 365 * 24 * 3600),
    "api_sync_budget_seconds": (1, 900),
    "api_presign_seconds": (60, 7 * 24 * 3600),
    "api_max_inline_bytes": (1024, 6 * 1024 * 1024),
}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read on first use (not at import: cold start and tests stay cheap)."""
    return Settings.from_env()
