"""Job errors and the one table of error codes: what each means, whether it is retried, the HTTP
status the API answers with, and the metric that counts it. docs/errors.md is checked against it.

Transient is a closed list: only the causes marked `retryable` here go back to the queue. Anything
else, including an exception nobody foresaw (`internal_error`), ends the job at once with a record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..metric_names import IMAGES_FAILED, IMAGES_FILTERED, IMAGES_INVALID, INTERNAL_ERRORS


@dataclass(frozen=True)
class ErrorCode:
    meaning: str
    kind: str          # "outcome" (in a failure record), "transient" (a cause, retried), "api" (HTTP only)
    http_status: int
    metric: str = ""   # the outcome metric a failure record with this code counts in


_INVALID = dict(kind="outcome", http_status=422, metric=IMAGES_INVALID)

CODES: dict[str, ErrorCode] = {
    # ---- outcomes: the `error.code` of a failure record --------------------------------------------
    "invalid_image": ErrorCode("The input is not a readable image (corrupt, truncated, empty or an unsupported "
                               "format).", **_INVALID),
    "image_too_large": ErrorCode("The input exceeds the byte or pixel limit of this deployment.",
                                 kind="outcome", http_status=413, metric=IMAGES_INVALID),
    "invalid_parameters": ErrorCode("A parameter has a wrong type, is out of range or is not supported by the "
                                    "model.", **_INVALID),
    "missing_parameters": ErrorCode("No prompt came from any source (metadata, sidecar, folder defaults, "
                                    "deployment).", **_INVALID),
    "content_filtered": ErrorCode("Bedrock's content filter rejected the prompt, the input or the output image.",
                                  kind="outcome", http_status=422, metric=IMAGES_FILTERED),
    "model_unavailable": ErrorCode("Bedrock does not serve this model here: an unknown id, or not offered in the "
                                   "region.", kind="outcome", http_status=422, metric=IMAGES_FAILED),
    "model_retired": ErrorCode("Bedrock retired this model: it reached end of life, or it is Legacy and this "
                               "account has not used it recently.", kind="outcome", http_status=422,
                               metric=IMAGES_FAILED),
    "access_denied": ErrorCode("The worker may not read the input, write the output, invoke the model or sign "
                               "with the KMS key.",
                               kind="outcome", http_status=403, metric=IMAGES_FAILED),
    "source_not_found": ErrorCode("The input object (or the version named in the event) no longer exists.",
                                  kind="outcome", http_status=404, metric=IMAGES_FAILED),
    "retries_exhausted": ErrorCode("A transient fault (throttling, timeout, service error) persisted on every "
                                   "attempt.", kind="outcome", http_status=503, metric=IMAGES_FAILED),
    "signing_unavailable": ErrorCode("The output could not be signed: the KMS key is disabled, deleted or not an "
                                     "ECC_NIST_P256 signing key, or the certificate chain does not certify it.",
                                     kind="outcome", http_status=500, metric=IMAGES_FAILED),
    "internal_error": ErrorCode("A defect in this pipeline: an exception nobody foresaw. Not retried; counted "
                                "and alarmed.", kind="outcome", http_status=500, metric=INTERNAL_ERRORS),
    # ---- transient causes: retried with back-off; the last attempt records retries_exhausted ---------
    "throttled": ErrorCode("Bedrock throttled the call.", kind="transient", http_status=429),
    "quota_exceeded": ErrorCode("A Bedrock service quota was exceeded.", kind="transient", http_status=429),
    "model_timeout": ErrorCode("The model, or the read of its answer, timed out.", kind="transient",
                               http_status=503),
    "model_error": ErrorCode("The model failed on this input and said so (usually passes on retry).",
                             kind="transient", http_status=503),
    "service_error": ErrorCode("Bedrock answered 5xx or could not be reached.", kind="transient", http_status=503),
    "storage_error": ErrorCode("S3, SQS or DynamoDB answered 5xx, SlowDown or could not be reached.",
                               kind="transient", http_status=503),
    "signing_error": ErrorCode("KMS throttled or failed the signing call, or could not be reached.",
                               kind="transient", http_status=503),
    "in_progress": ErrorCode("The same job is running in another invocation.", kind="transient", http_status=409),
    "deadline": ErrorCode("Too little time left in this invocation to start a model call.", kind="transient",
                          http_status=503),
    "quota_wait": ErrorCode("This deployment's per-model request quota has no slot now (core/quota.py); the "
                            "job comes back when one is due, without calling the model.", kind="transient",
                            http_status=429),
    # ---- codes only the HTTP API answers (never in a record) ----------------------------------------
    "job_not_found": ErrorCode("No job with this id (or it expired with the idempotency TTL).", kind="api",
                               http_status=404),
    "unsupported_media_type": ErrorCode("The request body is neither JSON (application/json) nor an image "
                                        "(image/*).", kind="api", http_status=415),
    "bulk_job_not_found": ErrorCode("No bulk job with this id (or its progress item expired, 90 days on).",
                                    kind="api", http_status=404),
    "invalid_manifest": ErrorCode("A bulk job's manifest is malformed, too large, missing, or names no rows "
                                  "(every problem with its line).", kind="api", http_status=422),
    "cost_not_acknowledged": ErrorCode("A bulk job's estimated model cost is above the ceiling; submit again "
                                       "with acknowledgeCost.", kind="api", http_status=422),
    "service_unavailable": ErrorCode("A transient fault (service error, idempotency table unavailable); retry "
                                     "after Retry-After.", kind="api", http_status=503),
}

# code -> meaning of every outcome code (what failure records carry; docs/errors.md lists them).
ERROR_CODES: dict[str, str] = {code: c.meaning for code, c in CODES.items() if c.kind == "outcome"}
# Transient causes, recorded inside a retries_exhausted failure's `error.cause`.
TRANSIENT_CAUSES: tuple[str, ...] = tuple(code for code, c in CODES.items() if c.kind == "transient")


def http_status(code: str) -> int:
    entry = CODES.get(code)
    return entry.http_status if entry else 500


def metric_for(code: str | None) -> str:
    entry = CODES.get(code or "")
    return entry.metric if entry and entry.metric else IMAGES_FAILED


@dataclass
class JobError(Exception):
    """A job failed. `code` is an outcome code, or a transient cause when `retryable`."""

    code: str
    message: str
    retryable: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        kind = CODES[self.code].kind if self.code in CODES else None
        if kind != ("transient" if self.retryable else "outcome"):
            raise ValueError(f"{self.code!r} is not a {'transient cause' if self.retryable else 'outcome code'}")

    def as_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        out.update(self.details)
        return out


def transient(cause: str, message: str, **details: Any) -> JobError:
    return JobError(cause, message, retryable=True, details=details)


def internal_error(exc: BaseException, job_id: str | None = None) -> JobError:
    """An exception nobody foresaw, as the permanent outcome that says so (never retried)."""
    where = f" in job {job_id}" if job_id else ""
    return JobError("internal_error", f"a defect in bedrock-img2img{where}: {type(exc).__name__}: {exc}"[:2000],
                    details={"exception": type(exc).__name__})


def retry_delay(attempt: int, base: int = 20, cap: int = 900, jitter: float = 0.5) -> int:
    """Seconds before delivery `attempt + 1` of a transiently failed job: exponential with jitter.

    The queue's own visibility timeout (6x the function timeout, ~36 min) would make every throttled
    job wait that long; this brings it back sooner, and spreads a throttled burst out in time.
    `jitter` is a number in [0, 1] (random in production) picking a point in the upper half."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return max(1, int(ceiling / 2 + ceiling / 2 * jitter))
