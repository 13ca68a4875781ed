"""`SubmitBulkJob` on the pipeline's bus (docs/events.md): a bulk job submitted by the path the CLI and
POST /v1/bulk-jobs take (img2img/bulk_submit.py), its answer an event on the same bus.

EventBridge invokes this function asynchronously with the whole envelope. The outcome is
`BulkJobSubmitted` (bulk_id, rows, cost, the Batch Operations job) or `BulkJobRefused` (an error code of
core/errors.py and why), source `bedrock-img2img`, both echoing `request_id`. A refusal is final; a
transient fault (S3, DynamoDB, S3 Control unreachable) raises, and Lambda retries the event. The bulk id
comes from the event's id, so a retried or redelivered event submits one bulk job, not two.
"""
from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from .. import bulk_submit
from ..aws.events import EventBridgePublisher
from ..core import bulk
from ..observability import logger
from ..settings import get_settings


@lru_cache(maxsize=1)
def target() -> bulk_submit.Target:
    return bulk_submit.aws_target(get_settings())


@lru_cache(maxsize=1)
def publisher() -> EventBridgePublisher:
    return EventBridgePublisher(get_settings().event_bus_name)


@logger.inject_lambda_context(clear_state=True, correlation_id_path="id")
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    outcome = submit_event(event)
    publisher().publish(outcome["detail-type"], outcome["detail"])
    return outcome


def submit_event(event: Any) -> dict[str, Any]:
    """The outcome event (`detail-type`, `detail`) of one SubmitBulkJob envelope."""
    envelope = event if isinstance(event, dict) else {}
    detail = envelope.get("detail")
    request_id = detail.get("request_id") if isinstance(detail, dict) else None
    echo = {"request_id": request_id if isinstance(request_id, str) else None}
    if envelope.get("detail-type") != bulk.SUBMIT_EVENT or not isinstance(envelope.get("id"), str):
        return refused(echo, "invalid_parameters", f"not a {bulk.SUBMIT_EVENT} EventBridge event")
    problems = bulk.submit_detail_problems(detail)
    if problems:
        return refused(echo, "invalid_parameters", f"invalid {bulk.SUBMIT_EVENT} detail: " + "; ".join(problems))
    bulk_id = bulk.event_bulk_id(envelope["id"])
    known = target().progress.get(bulk_id)
    if known is not None and known.batch_job_id:  # submitted already (a retry after the job was created)
        return submitted(echo, bulk_id, known.total, known.definition, known.batch_job_id)
    # else new, or a retry after a fault before S3 Batch Operations had the job: submit finishes it
    try:
        done = bulk_submit.submit_request(
            target(), detail["manifest"], detail.get("params") or {}, detail["output_prefix"],
            namespace=bulk.EVENTS_NAMESPACE, acknowledge_cost=bool(detail.get("acknowledgeCost")),
            operation=detail.get("operation"), bulk_id=bulk_id,
            source={"event": envelope["id"], "source": envelope.get("source"), **echo})
    except bulk_submit.BulkRefused as exc:
        logger.info("bulk job refused", extra={"code": exc.code, "event_id": envelope["id"]})
        return refused(echo, exc.code, exc.message)
    return submitted(echo, done.bulk_id, done.rows, {
        "operation": done.operation, "estimated_cost_usd": done.estimated_cost_usd,
        "output_prefix": done.output_prefix}, done.batch_job_id)


def submitted(echo: dict[str, Any], bulk_id: str, rows: int, definition: dict[str, Any],
              batch_job_id: str | None = None) -> dict[str, Any]:
    s = get_settings()
    return {"detail-type": bulk.SUBMITTED_EVENT, "detail": {
        **echo, "bulk_id": bulk_id, "status": "submitted", "rows": rows, "operation": definition.get("operation"),
        "estimated_cost_usd": definition.get("estimated_cost_usd"),
        "output": {"bucket": s.output_bucket, "prefix": definition.get("output_prefix")},
        "batch_job_id": batch_job_id, "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}


def refused(echo: dict[str, Any], code: str, message: str) -> dict[str, Any]:
    return {"detail-type": bulk.REFUSED_EVENT, "detail": {**echo, "status": "refused", "error_code": code,
                                                           "message": message[:2000]}}
