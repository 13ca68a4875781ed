"""Direct invoke (Step Functions task, another service): a job JSON in, its outcome record out.

Input: `{"source": "s3://bucket/key" | {"bucket", "key", "version_id"?}, "params": {...}?, "job_id"?: str}`.
`params` are a sidecar's, operations included: `{"operation": "inpaint", "mask": "room-mask.png", ...}`
(companions are input-bucket keys, relative to the image's folder or `/absolute`; docs/operations.md).
Permanent failures come back as a failure record (`status: failed`), so a state machine can branch on
`$.status`; transient faults raise `TransientJobError` so the caller's Retry policy handles them.
"""
from __future__ import annotations

from typing import Any

from ..assembly import pipeline_for
from ..core.errors import JobError
from ..core.triggers import job_trigger
from ..observability import logger, metrics, report_outcome, tracer


class TransientJobError(Exception):
    """Retry me: throttling, timeouts, service errors (the Lambda errorType Step Functions matches)."""


class InvalidJobError(Exception):
    """The input is not a job at all (no source): retrying cannot help."""


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    pipeline = pipeline_for(context)
    try:
        trigger = job_trigger(event if isinstance(event, dict) else {}, origin="direct")
        [record] = pipeline.handle(trigger) or [None]
    except JobError as exc:
        if exc.retryable:
            raise TransientJobError(f"{exc.code}: {exc.message}") from None
        raise InvalidJobError(f"{exc.code}: {exc.message}") from None
    if record is None:
        raise InvalidJobError("the job produced no outcome (the source was superseded by a newer version)")
    report_outcome(record)
    return {k: v for k, v in record.items() if k != "replayed"}
