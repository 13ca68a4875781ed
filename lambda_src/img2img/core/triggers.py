"""What can start a job, parsed from an SQS message body (or a direct invoke) into Triggers.

Accepted: S3 event notifications (keys are form-URL-encoded: decoded exactly once here), EventBridge
`Object Created` events from S3, `ImageGenerationRequested` events, and our own job messages.
`s3:TestEvent` and event types we do not handle yield no trigger.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from .errors import JobError

JOB_MESSAGE = "img2img.job"
SIDECAR_CHECK = "img2img.sidecar-check"
REQUESTED_EVENT = "ImageGenerationRequested"


@dataclass(frozen=True)
class Trigger:
    kind: str                      # "object" (an upload), "job" (explicit request), "check" (deferred sidecar check)
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    params: dict[str, Any] | None = None
    job_id: str | None = None
    output: dict[str, Any] | None = None
    origin: str = "s3"
    # A permanent problem found while parsing a message whose source is known: the pipeline records
    # this failure for that source instead of resolving the job.
    error: JobError | None = None


def parse_body(body: str) -> list[Trigger]:
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise JobError("invalid_parameters", f"the queue message is not JSON: {exc.msg}") from None
    return parse_message(message)


def parse_message(message: Any) -> list[Trigger]:
    try:
        return _parse(message)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise JobError("invalid_parameters", f"the message looks like an event but is malformed "
                       f"({type(exc).__name__}: {exc})") from None


def _parse(message: Any) -> list[Trigger]:
    if not isinstance(message, dict):
        raise JobError("invalid_parameters", "the queue message is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    if "Records" in message:
        return [t for t in (_s3_record(r) for r in message["Records"] or []) if t]
    if message.get("source") == "aws.s3" and "detail" in message:
        return [_eventbridge_s3(message)] if message.get("detail-type") == "Object Created" else []
    if message.get("detail-type") == REQUESTED_EVENT:
        return [job_trigger(message.get("detail") or {}, origin="eventbridge")]
    if message.get("type") == JOB_MESSAGE:
        return [job_trigger(message, origin=message.get("origin", "job"))]
    if message.get("type") == SIDECAR_CHECK:
        return [Trigger("check", message["bucket"], message["key"], message.get("version_id"),
                        message.get("etag"), origin="deferred")]
    raise JobError("invalid_parameters", "the queue message is neither an S3 event, an EventBridge event "
                   f"nor a job message (keys: {sorted(message)[:8]})")


def _s3_record(record: dict[str, Any]) -> Trigger | None:
    if not str(record.get("eventName", "")).startswith("ObjectCreated"):
        return None
    s3 = record["s3"]
    obj = s3["object"]
    return Trigger("object", s3["bucket"]["name"], unquote_plus(obj["key"]), obj.get("versionId"),
                   obj.get("eTag"), obj.get("size"), origin="s3")


def _eventbridge_s3(message: dict[str, Any]) -> Trigger:
    detail = message["detail"]
    obj = detail["object"]
    # EventBridge encodes keys like S3 notifications do (Powertools' data class decodes them the same way).
    return Trigger("object", detail["bucket"]["name"], unquote_plus(obj["key"]), obj.get("version-id"),
                   obj.get("etag"), obj.get("size"), origin="eventbridge")


def job_trigger(job: dict[str, Any], origin: str) -> Trigger:
    """A job message or request event: `{"source": "s3://bucket/key" | {"bucket","key"}, "params": {...}}`."""
    source = job.get("source") if "source" in job else {k: job.get(k) for k in ("bucket", "key", "version_id")}
    if isinstance(source, str):
        if not source.startswith("s3://") or "/" not in source[5:]:
            raise JobError("invalid_parameters", f"source {source!r} is not an s3://bucket/key URI")
        bucket, key = source[5:].split("/", 1)
        source = {"bucket": bucket, "key": key}
    if not isinstance(source, dict) or not source.get("bucket") or not source.get("key"):
        raise JobError("invalid_parameters", "a job needs a source: s3://bucket/key or {bucket, key}")
    params = job.get("params")
    if params is not None and not isinstance(params, dict):
        raise JobError("invalid_parameters", "a job's params must be a JSON object")
    return Trigger("job", source["bucket"], source["key"], source.get("version_id"), params=params,
                   job_id=job.get("job_id"), output=job.get("output"), origin=origin)
