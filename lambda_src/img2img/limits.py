"""Every numeric setting the worker and the API function read: its default and its allowed range, once.

settings.py takes its defaults and checks from this table, and infra/config.py takes the same objects for
its context keys, so `cdk synth` and the running function can never disagree about a limit. Plain data,
no imports: it is read at cold start.
"""
from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
DAY = 24 * 3600

# A change to a folder's `_defaults.json` reaches every job within this many seconds: each sandbox keeps
# the chain of defaults it read (found or absent) this long instead of one GET per folder level per job
# (docs/parameters.md). The sandbox that receives the change's own S3 event forgets it at once.
FOLDER_DEFAULTS_CACHE_SECONDS = 30


@dataclass(frozen=True)
class Limit:
    default: int
    minimum: int
    maximum: int
    why: str = ""  # where the range comes from, when it is not obvious (shown in synth-time errors)

    def allows(self, value: int) -> bool:
        return self.minimum <= value <= self.maximum

    @property
    def allowed(self) -> str:
        """The range as users read it in an error: `1 .. 10 (why)`."""
        return f"{self.minimum} .. {self.maximum}" + (f" ({self.why})" if self.why else "")


LIMITS: dict[str, Limit] = {
    "max_input_bytes": Limit(30 * MIB, 1, 500 * MIB),
    "max_input_pixels": Limit(40_000_000, 4096, 500_000_000),
    "sidecar_grace_seconds": Limit(120, 0, 900, "an SQS delay: at most 15 minutes"),
    "max_receive_count": Limit(5, 1, 1000, "SQS redrive policy"),
    # Image calls take 30-90 s: botocore's 60 s default read timeout would cut them off.
    "bedrock_read_timeout": Limit(150, 120, 900),
    # A second attempt absorbs a passing throttle; further retries come from the queue's back-off.
    "bedrock_max_attempts": Limit(2, 1, 10),
    "batch_concurrency": Limit(4, 1, 64),
    "idempotency_ttl_seconds": Limit(7 * DAY, 60, 365 * DAY, "60 s .. 1 year"),
    "api_sync_budget_seconds": Limit(25, 1, 28, "API Gateway's 29 s integration timeout"),
    "api_presign_seconds": Limit(900, 60, 7 * DAY, "SigV4 presigned URLs live at most 7 days"),
    "api_max_inline_bytes": Limit(4_000_000, 1 * KIB, 6 * MIB, "Lambda's 6 MB response"),
    # A bulk job whose estimated model cost (USD) is above this needs acknowledgeCost / --yes (docs/bulk.md).
    "bulk_max_cost_usd": Limit(100, 0, 1_000_000),
}


def either(choices: tuple[str, ...]) -> str:
    """`a, b or c`: allowed values in an error message."""
    return choices[0] if len(choices) == 1 else f"{', '.join(choices[:-1])} or {choices[-1]}"
