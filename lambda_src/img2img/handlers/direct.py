"""Direct invoke (Step Functions task, another service): a job JSON in, its outcome record out.

Input: `{"source": "s3://bucket/key" | {"bucket", "key", "version_id"?}, "params": {...}?, "job_id"?: str}`.
`params` are a sidecar's, operations included: `{"operation": "inpaint", "mask": "room-mask.png", ...}`
(companions are input-bucket keys, relative to the image's folder or `/absolute`; docs/operations.md).
Permanent failures come back as a failure record (`status: failed`), so a state machine can branch on
`$.status`; transient faults raise `TransientJobError` so the caller's Retry policy handles them. A job the
per-model quota turns away raises `QuotaWaitError`, whose message is JSON with the wait the limiter gave
(`retry_after`): a back-off would guess it, the state machine can wait exactly that long
(docs/step-functions/img2img-direct.asl.json).
"""
from __future__ import annotations

import json
from typing import Any

from ..assembly import pipeline_for
from ..core.errors import JobError
from ..core.triggers import job_trigger
from ..observability import logger, metrics, report_outcome, tracer


class TransientJobError(Exception):
    """Retry me: throttling, timeouts, service errors (the Lambda errorType Step Functions matches)."""


class QuotaWaitError(TransientJobError):
    """No slot in the model's quota yet, and no model call made: come back in `retry_after` seconds.

    Its message is `{"code": "quota_wait", "message", "retry_after"}` as JSON: Lambda puts it in the
    error's Cause (`{"errorMessage": <it>, "errorType": "QuotaWaitError", ...}`), where a Wait state's
    SecondsPath can read it. A subclass, so Python callers catching TransientJobError still do."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(json.dumps({"code": "quota_wait", "message": message, "retry_after": retry_after}))
        self.retry_after = retry_after


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
        if exc.code == "quota_wait":
            raise QuotaWaitError(exc.message, int(exc.details["retry_after"])) from None
        if exc.retryable:
            raise TransientJobError(f"{exc.code}: {exc.message}") from None
        raise InvalidJobError(f"{exc.code}: {exc.message}") from None
    if record is None:
        raise InvalidJobError("the job produced no outcome (the source was superseded by a newer version)")
    report_outcome(record)
    return {k: v for k, v in record.items() if k != "replayed"}
