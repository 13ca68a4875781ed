"""SQS worker: S3 notifications, EventBridge S3 events and job messages, one record at a time each.

Thin by design: parse the message, hand each trigger to the pipeline, report what failed so that
only those messages return to the queue (partial batch response).
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from ..assembly import get_pipeline, pipeline_for
from ..batch import ConcurrentBatchProcessor
from ..core.errors import JobError
from ..core.triggers import parse_body
from ..observability import logger, metrics, report_outcome, tracer
from ..settings import get_settings


def record_handler(record: SQSRecord) -> list[dict[str, Any]]:
    settings = get_settings()
    attempt = int(record.attributes.approximate_receive_count or 1)
    logger.thread_safe_append_keys(message_id=record.message_id, attempt=attempt)
    try:
        triggers = parse_body(record.body)
    except JobError as exc:  # a message that is no job at all: retrying cannot help
        logger.error("unreadable queue message dropped", extra={"error": exc.message, "body": record.body[:500]})
        return []
    outcomes = []
    for trigger in triggers:
        for outcome in get_pipeline().handle(trigger, attempt, attempt >= settings.max_receive_count):
            report_outcome(outcome)
            outcomes.append({"job_id": outcome["job_id"], "status": outcome["status"]})
    return outcomes


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    pipeline_for(context)
    processor = ConcurrentBatchProcessor(max_workers=get_settings().batch_concurrency)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
