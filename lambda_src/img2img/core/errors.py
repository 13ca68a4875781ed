"""Job errors and the stable error codes users see in failure records and API answers.

A `JobError` is permanent unless `retryable`: permanent ones end the job with a failure record at
once; retryable ones go back to the queue, and the last attempt records `retries_exhausted`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# code -> what it means (docs/errors.md is generated from the same words).
ERROR_CODES: dict[str, str] = {
    "invalid_image": "The input is not a readable image (corrupt, truncated, empty or an unsupported format).",
    "image_too_large": "The input exceeds the byte or pixel limit of this deployment.",
    "invalid_parameters": "A parameter has a wrong type, is out of range or is not supported by the model.",
    "missing_parameters": "No prompt came from any source (metadata, sidecar, folder defaults, deployment).",
    "content_filtered": "Bedrock's content filter rejected the prompt, the input or the output image.",
    "model_unavailable": "Bedrock does not serve this model here: not found in the region, or end of life.",
    "access_denied": "The worker may not read the input, write the output or invoke the model.",
    "source_not_found": "The input object (or the version named in the event) no longer exists.",
    "model_error": "The model failed on this input and said so (not a transient fault).",
    "retries_exhausted": "A transient fault (throttling, timeout, service error) persisted on every attempt.",
}

# Transient causes, recorded inside a retries_exhausted failure's `error.cause`.
TRANSIENT_CAUSES = ("throttled", "quota_exceeded", "model_timeout", "model_error", "service_error",
                    "storage_error", "in_progress", "deadline", "internal_error")


@dataclass
class JobError(Exception):
    """A job failed. `code` is one of ERROR_CODES (or a transient cause when `retryable`)."""

    code: str
    message: str
    retryable: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        if not self.retryable and self.code not in ERROR_CODES:
            raise ValueError(f"unknown permanent error code {self.code!r}")

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        out.update(self.details)
        return out


def transient(cause: str, message: str, **details: Any) -> JobError:
    return JobError(cause, message, retryable=True, details=details)


def retry_delay(attempt: int, base: int = 20, cap: int = 900, jitter: float = 0.5) -> int:
    """Seconds before delivery `attempt + 1` of a transiently failed job: exponential with jitter.

    The queue's own visibility timeout (6x the function timeout, ~36 min) would make every throttled
    job wait that long; this brings it back sooner, and spreads a throttled burst out in time.
    `jitter` is a number in [0, 1] (random in production) picking a point in the upper half."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return max(1, int(ceiling / 2 + ceiling / 2 * jitter))
