"""SQS worker: S3 notifications, EventBridge S3 events and job messages, one record at a time each.

Thin by design: parse the message, hand each trigger to the pipeline, report what failed so that
only those messages return to the queue (partial batch response).
"""
from __future__ import annotations

import json
import random
from typing import Any

from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ..assembly import get_pipeline, pipeline_for
from ..batch import ConcurrentBatchProcessor
from ..core.errors import JobError, retry_delay
from ..core.quota import RESERVATION_FIELD
from ..core.triggers import parse_body
from ..observability import logger, metrics, report_outcome, tracer
from ..settings import get_settings


class UnreadableMessageError(Exception):
    """A queue message that names no job: failed on every delivery, so the queue moves it to the DLQ."""


def record_handler(record: SQSRecord) -> list[dict[str, Any]]:
    settings = get_settings()
    attempt = int(record.attributes.approximate_receive_count or 1)
    logger.thread_safe_remove_keys(["correlation_id"])  # a thread's previous record is not this one
    logger.thread_safe_append_keys(message_id=record.message_id, attempt=attempt)
    last_attempt = attempt >= settings.max_receive_count
    try:
        triggers = parse_body(record.body)
    except JobError as exc:
        # No job can be named from it, so no record can say what happened: it goes to the DLQ (alarmed),
        # never a silent delete. Its content stays out of logs above DEBUG (it may carry prompts).
        logger.error("unreadable queue message: to the DLQ", extra={"error": exc.message,
                                                                      "bytes": len(record.body)})
        logger.debug("unreadable queue message body", extra={"body": record.body[:2000]})
        scheduler = get_pipeline().scheduler
        if scheduler is not None and not last_attempt:
            scheduler.retry_later(record.receipt_handle, 0)  # straight on towards maxReceiveCount
        raise UnreadableMessageError(exc.message) from None
    outcomes = []
    try:
        for trigger in triggers:
            for outcome in get_pipeline().handle(trigger, attempt, last_attempt):
                report_outcome(outcome)
                outcomes.append({"job_id": outcome["job_id"], "status": outcome["status"]})
    except JobError as exc:
        scheduler = get_pipeline().scheduler
        if exc.code == "quota_wait" and not last_attempt and scheduler is not None and _requeue(record, exc):
            return outcomes  # this message is done: a delayed copy brings the job back when its slot is due
        if exc.retryable and not last_attempt and scheduler is not None:
            delay = exc.details.get("retry_after") or retry_delay(attempt, jitter=random.random())
            if scheduler.retry_later(record.receipt_handle, delay):
                logger.info("transient fault: retrying later", extra={"cause": exc.code, "seconds": delay})
        raise
    return outcomes


def _requeue(record: SQSRecord, exc: JobError) -> bool:
    """A job the per-model quota turned away (no model call made) goes back as a new, delayed message, so
    waiting for its turn does not use up its receive count on the way to the DLQ; the slot it reserved
    for then rides on the message's envelope (core/quota.py). False: could not."""
    message = json.loads(record.body)
    message.pop(RESERVATION_FIELD, None)  # the one it held, if any, is spent or given up
    if exc.details.get("reservation"):
        message[RESERVATION_FIELD] = exc.details["reservation"]
    try:
        get_pipeline().scheduler.defer(message, int(exc.details["retry_after"]))
    except JobError:
        return False  # the caller makes the message itself visible again after the delay
    logger.info("quota wait: back to the queue", extra={"seconds": exc.details["retry_after"],
                                                        "reserved": bool(exc.details.get("reservation"))})
    return True


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    pipeline_for(context)
    processor = ConcurrentBatchProcessor(max_workers=get_settings().batch_concurrency)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
