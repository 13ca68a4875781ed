"""What can start a job: every message the worker (or the direct-invoke function) receives, parsed into
Triggers at the edge, totally.

Accepted shapes (`_SHAPES`): S3 event notifications (`Records[]`, keys form-URL-encoded: decoded exactly
once here), the same wrapped in an SNS notification, EventBridge `Object Created` events from S3,
`ImageGenerationRequested` events, our own job and sidecar-check messages. `s3:TestEvent`, records
other than `ObjectCreated:*` and other S3 detail-types yield no trigger.

Every message ends in exactly one of three ways, never another exception:
- Triggers, each with a bucket and a key and `error is None`;
- a Trigger with `error` set (a permanent `invalid_parameters` JobError): the source is known but another
  field is wrong, so the pipeline records one failure for that source;
- `UnreadableMessage`: no source can be identified, so there is nothing to record a failure for (the
  worker sends the message to the DLQ). Its text describes the message's structure, never its values.
"""
from __future__ import annotations

import difflib
import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote_plus

from .errors import JobError
from .quota import RESERVATION_FIELD, Reservation

JOB_MESSAGE = "img2img.job"
SIDECAR_CHECK = "img2img.sidecar-check"
BULK_REPORT = "img2img.bulk-report"   # a bulk job's rows all have outcomes: write its report (core/bulk.py)
REQUESTED_EVENT = "ImageGenerationRequested"
S3_TEST_EVENT = "s3:TestEvent"
S3_OBJECT_CREATED = "Object Created"       # EventBridge detail-type of an S3 upload
SNS_NOTIFICATION = "Notification"          # SNS -> SQS without raw message delivery

# A job's own fields, as ImageGenerationRequested detail and direct-invoke input may carry them.
JOB_FIELDS = ("source", "params", "job_id", "output")
SOURCE_FIELDS = ("bucket", "key", "version_id")
OUTPUT_FIELDS = ("prefix",)
# job_id goes into S3 metadata (ASCII) and into keys.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ORIGIN = re.compile(r"[a-z][a-z0-9-]{0,31}")
# S3 general purpose bucket naming rules (names, not reserved prefixes/suffixes: those are S3's to refuse).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
MAX_KEY_BYTES = 1024
MAX_PREFIX_BYTES = 256
MAX_BUCKET_CHARS = 255       # what a source may name at all (legacy us-east-1 names were this long)
MAX_TOKEN_CHARS = 1024       # version ids and ETags
MAX_SNS_DEPTH = 1            # one SNS wrapping (SNS -> SQS); SNS does not deliver to SNS

_ALLOWED_JOB_ID = "1 to 128 letters, digits, '_', '.', '-', starting with a letter or digit"
_ALLOWED_PREFIX = (f"a relative key prefix: no leading '/', no '.' or '..' segments, no control characters, "
                   f"at most {MAX_PREFIX_BYTES} UTF-8 bytes")
_ALLOWED_SOURCE = "s3://bucket/key or {bucket, key, version_id?}"


class UnreadableMessage(JobError):
    """A message that names no source we could record a failure for: not JSON, not an object, an
    unknown shape, or an event without bucket and key. Permanent; the worker dead-letters it."""

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__("invalid_parameters", message, details=details or {})


@dataclass(frozen=True)
class Trigger:
    kind: str                      # "object" (an upload), "job" (explicit request), "check" (deferred sidecar
    #                                check), "bulk-report" (a bulk job's final report: key = bulk id)
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    params: dict[str, Any] | None = None
    job_id: str | None = None
    output: dict[str, Any] | None = None
    origin: str = "s3"
    # The bulk job (core/bulk.py) this job is a row of: its outcome is counted on the bulk job's progress.
    bulk_id: str | None = None
    # A permanent problem found while parsing a message whose source is known: the pipeline records
    # this failure for that source instead of resolving the job.
    error: JobError | None = None
    # The quota slot a requeued job holds (core/quota.py): from the message's envelope, never part of the
    # job's identity (not compared, not in the idempotency key); a malformed one is dropped.
    reservation: Reservation | None = field(default=None, compare=False)


# ---- entry points --------------------------------------------------------------------------------------

def parse_body(body: str) -> list[Trigger]:
    """An SQS message body -> Triggers (or UnreadableMessage), with the quota reservation the worker put
    on the envelope of a message it requeued (`RESERVATION_FIELD`: every shape ignores unknown top-level
    fields, and direct-invoke input, which is strict, never carries one)."""
    message = _loads(body, "the queue message")
    triggers = parse_message(message)
    held = Reservation.from_message(message.get(RESERVATION_FIELD)) if isinstance(message, dict) else None
    return [replace(t, reservation=held) for t in triggers] if held else triggers


def parse_message(message: Any) -> list[Trigger]:
    """A decoded message -> Triggers (or UnreadableMessage)."""
    return _parse(message, 0)


def job_trigger(job: Any, origin: str) -> Trigger:
    """A job `{"source": "s3://bucket/key" | {"bucket","key","version_id"?}, "params"?, "job_id"?, "output"?}`.

    `origin` says where it came from: "eventbridge" (an ImageGenerationRequested detail) and "direct"
    (direct-invoke input) are external and may carry only JOB_FIELDS; anything else is our own job
    message (the API's), which may also carry `type`, `origin` and a flat bucket/key/version_id."""
    where, fields = _JOB_ORIGINS.get(origin, _OWN_MESSAGE)
    return _job(job, origin, where, fields)


# ---- shapes --------------------------------------------------------------------------------------------

def _parse(message: Any, depth: int) -> list[Trigger]:
    if not isinstance(message, dict):
        raise _unreadable("the message is not a JSON object", message)
    for matches, parse in _SHAPES:
        if matches(message):
            return parse(message, depth)
    raise _unreadable("the message is neither an S3 event notification (Records), an SNS notification, an "
                      "EventBridge event (S3 Object Created or ImageGenerationRequested) nor a job message", message)


def _sns(message: dict[str, Any], depth: int) -> list[Trigger]:
    inner = message["Message"]
    if depth >= MAX_SNS_DEPTH:
        raise _unreadable(f"an SNS notification inside {MAX_SNS_DEPTH} other(s)", message)
    if not isinstance(inner, str):
        raise _unreadable("the SNS notification's Message is not a string", message)
    try:
        decoded = _loads(inner, "the SNS notification's Message")
    except UnreadableMessage as exc:
        raise _unreadable(exc.details["problem"], message) from None
    try:
        return _parse(decoded, depth + 1)
    except UnreadableMessage as exc:
        problem, shape = exc.details["problem"], exc.details["shape"]
        raise _unreadable(f"in an SNS notification's Message, {problem}", None,
                          f"an SNS notification whose Message is {shape}") from None


def _s3_test_event(message: dict[str, Any], depth: int) -> list[Trigger]:
    return []


def _records(message: dict[str, Any], depth: int) -> list[Trigger]:
    records = message["Records"]
    if records is None:
        return []
    if not isinstance(records, list):
        raise _unreadable("Records is not an array", message)
    triggers = (_s3_record(record, f"Records[{i}]", message) for i, record in enumerate(records))
    return [t for t in triggers if t is not None]


def _s3_record(record: Any, path: str, message: dict[str, Any]) -> Trigger | None:
    if not isinstance(record, dict):
        raise _unreadable(f"{path} is not an object", message)
    event = record.get("eventName")
    if not isinstance(event, str):
        raise _unreadable(f"{path}.eventName is {_kind(event)}, not an event name like ObjectCreated:Put", message)
    if not event.startswith("ObjectCreated"):
        return None
    obj = _obj(_at(record, "s3", "object"))
    bucket, key = _object_source(_at(record, "s3", "bucket", "name"), obj.get("key"),
                                 f"{path}.s3.bucket.name", f"{path}.s3.object.key", message)
    f = _Problems("S3 event notification")
    where = f"{path}.s3.object"
    return Trigger("object", bucket, key, f.token(obj.get("versionId"), f"{where}.versionId"),
                   f.token(obj.get("eTag"), f"{where}.eTag"), f.size(obj.get("size"), f"{where}.size"),
                   origin="s3", error=f.error())


def _eventbridge_s3(message: dict[str, Any], depth: int) -> list[Trigger]:
    detail_type = message["detail-type"]
    if not isinstance(detail_type, str):
        raise _unreadable(f"detail-type is {_kind(detail_type)}, not a string", message)
    if detail_type != S3_OBJECT_CREATED:
        return []
    detail = message.get("detail")
    if not isinstance(detail, dict):
        raise _unreadable(f"detail is {_kind(detail)}, not an object", message)
    obj = _obj(detail.get("object"))
    # EventBridge encodes keys like S3 notifications do (Powertools' data class decodes them the same way).
    bucket, key = _object_source(_at(detail, "bucket", "name"), obj.get("key"), "detail.bucket.name",
                                 "detail.object.key", message)
    f = _Problems("S3 Object Created event")
    etag_field = "eTag" if "eTag" in obj and "etag" not in obj else "etag"  # moto writes eTag
    return [Trigger("object", bucket, key, f.token(obj.get("version-id"), "detail.object.version-id"),
                    f.token(obj.get(etag_field), f"detail.object.{etag_field}"),
                    f.size(obj.get("size"), "detail.object.size"), origin="eventbridge", error=f.error())]


def _requested(message: dict[str, Any], depth: int) -> list[Trigger]:
    return [job_trigger(message.get("detail"), origin="eventbridge")]


def _job_message(message: dict[str, Any], depth: int) -> list[Trigger]:
    return [_job(message, message.get("origin", "job"), *_OWN_MESSAGE)]


def _sidecar_check(message: dict[str, Any], depth: int) -> list[Trigger]:
    bucket, key = _object_source(message.get("bucket"), message.get("key"), "bucket", "key", message,
                                 decode=False)
    f = _Problems("sidecar check message")
    return [Trigger("check", bucket, key, f.token(message.get("version_id"), "version_id"),
                    f.token(message.get("etag"), "etag"), origin="deferred", error=f.error())]


def _bulk_report(message: dict[str, Any], depth: int) -> list[Trigger]:
    bulk_id = message.get("bulk_id")
    if not (isinstance(bulk_id, str) and JOB_ID.fullmatch(bulk_id)):
        raise UnreadableMessage("a bulk report message without a valid bulk_id")
    return [Trigger("bulk-report", "", bulk_id, origin="bulk", bulk_id=bulk_id)]


# What a message looks like -> how to parse it. First match wins.
_SHAPES: tuple[tuple[Callable[[dict], bool], Callable[[dict, int], list[Trigger]]], ...] = (
    (lambda m: m.get("Type") == SNS_NOTIFICATION and "Message" in m, _sns),
    (lambda m: m.get("Event") == S3_TEST_EVENT, _s3_test_event),
    (lambda m: "Records" in m, _records),
    (lambda m: m.get("source") == "aws.s3" and "detail-type" in m, _eventbridge_s3),
    (lambda m: m.get("detail-type") == REQUESTED_EVENT, _requested),
    (lambda m: m.get("type") == JOB_MESSAGE, _job_message),
    (lambda m: m.get("type") == SIDECAR_CHECK, _sidecar_check),
    (lambda m: m.get("type") == BULK_REPORT, _bulk_report),
)


# ---- jobs ----------------------------------------------------------------------------------------------

# origin -> (what errors call the job, the fields it may carry; None: our own message, fields not checked)
_JOB_ORIGINS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "eventbridge": ("event detail", JOB_FIELDS),
    "direct": ("direct invoke input", JOB_FIELDS),
}
_OWN_MESSAGE: tuple[str, None] = ("job message", None)


def _job(job: Any, origin: Any, where: str, fields: tuple[str, ...] | None) -> Trigger:
    job = {} if job is None else job
    bucket, key, version, source = _job_source(job, where, flat=fields is None)
    f = _Problems(where)
    if fields is not None:
        f.unknown(job, fields, "", "a job")
        if isinstance(source, dict):
            f.unknown(source, SOURCE_FIELDS, "source.", "source")
    if not _valid_bucket_name(bucket):
        f.add("source.bucket", "is not a valid S3 bucket name", bucket,
              "3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit, "
              "not an IP address")
    version_id = f.token(version, "source.version_id")
    params = job.get("params")
    if params is not None and not isinstance(params, dict):
        f.add("params", f"must be a JSON object (docs/parameters.md), not {_kind(params)}")
        params = None
    job_id = job.get("job_id")
    if job_id is not None and not (isinstance(job_id, str) and JOB_ID.fullmatch(job_id)):
        f.add("job_id", "is not a valid job id", job_id, _ALLOWED_JOB_ID)
        job_id = None
    if not (isinstance(origin, str) and ORIGIN.fullmatch(origin)):
        f.add("origin", "is not a valid origin", origin, "1 to 32 lowercase letters, digits and '-'")
        origin = "job"
    bulk_id = job.get("bulk_id") if fields is None else None  # our own messages only (core/bulk.py)
    if bulk_id is not None and not (isinstance(bulk_id, str) and JOB_ID.fullmatch(bulk_id)):
        f.add("bulk_id", "is not a valid bulk job id", bulk_id, _ALLOWED_JOB_ID)
        bulk_id = None
    return Trigger("job", bucket, key, version_id, params=params, job_id=job_id,
                   output=_output(job.get("output"), f), origin=origin, bulk_id=bulk_id, error=f.error())


def _job_source(job: Any, where: str, flat: bool) -> tuple[str, str, Any, Any]:
    """(bucket, key, version_id as given, the source value), or UnreadableMessage: no source, no record."""
    if not isinstance(job, dict):
        raise _unreadable(f"the {where} is not a JSON object: a job is {{source, params?, job_id?, output?}}", job)
    if "source" not in job and not flat:
        raise _unreadable(f"the {where} needs a source: {_ALLOWED_SOURCE}", job)
    source = job.get("source") if "source" in job else {k: job.get(k) for k in SOURCE_FIELDS}
    if isinstance(source, str):
        if not source.startswith("s3://") or "/" not in source[5:]:
            raise _unreadable(f"the {where}'s source is not an s3://bucket/key URI (it is {_kind(source)})", job)
        bucket, key = source[5:].split("/", 1)
        version = None
    elif isinstance(source, dict):
        bucket, key, version = source.get("bucket"), source.get("key"), source.get("version_id")
    else:
        raise _unreadable(f"the {where} needs a source: {_ALLOWED_SOURCE}, not {_kind(source)}", job)
    problem = _bucket_problem(bucket) or _key_problem(key)
    if problem:
        which = "source.bucket" if _bucket_problem(bucket) else "source.key"
        raise _unreadable(f"the {where} needs a source: {_ALLOWED_SOURCE} ({which} {problem})", job)
    return bucket, key, version, source


def _output(output: Any, f: _Problems) -> dict[str, Any] | None:
    """The validated `output` ({"prefix": "a/b/"}), or None. Where it may write is the pipeline's call."""
    if output is None:
        return None
    if not isinstance(output, dict):
        f.add("output", f"must be an object {{\"prefix\": ...}}, not {_kind(output)}")
        return None
    before = len(f.errors)
    f.unknown(output, OUTPUT_FIELDS, "output.", "output")
    prefix = output.get("prefix")
    if prefix is None:
        return None
    problem = _prefix_problem(prefix)
    if problem:
        f.add("output.prefix", problem, prefix, _ALLOWED_PREFIX)
    if len(f.errors) > before:
        return None
    return {"prefix": prefix if not prefix or prefix.endswith("/") else prefix + "/"}


def _prefix_problem(prefix: Any) -> str | None:
    if not isinstance(prefix, str):
        return f"must be a string, not {_kind(prefix)}"
    if not _utf8(prefix):
        return "is not valid UTF-8"
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        return f"is longer than {MAX_PREFIX_BYTES} UTF-8 bytes"
    if prefix.startswith("/"):
        return "starts with '/'"
    if any(segment in (".", "..") for segment in prefix.split("/")):
        return "has a '.' or '..' segment"
    if _has_control(prefix):
        return "contains a control character"
    return None


# ---- sources -------------------------------------------------------------------------------------------

def _object_source(bucket: Any, raw_key: Any, bucket_path: str, key_path: str, message: Any,
                   decode: bool = True) -> tuple[str, str]:
    """An event's bucket and key (the key decoded once), or UnreadableMessage."""
    key = unquote_plus(raw_key) if decode and isinstance(raw_key, str) else raw_key
    for path, problem in ((bucket_path, _bucket_problem(bucket)), (key_path, _key_problem(key))):
        if problem:
            raise _unreadable(f"{path} {problem}", message)
    return bucket, key


def _bucket_problem(bucket: Any) -> str | None:
    """Why `bucket` names no bucket at all (valid naming is checked separately, for jobs only:
    S3's own events may name legacy buckets)."""
    if not isinstance(bucket, str) or not bucket:
        return f"is {_kind(bucket)}, not a bucket name"
    if len(bucket) > MAX_BUCKET_CHARS or not _utf8(bucket) or _has_control(bucket):
        return f"is not a bucket name (control characters, invalid UTF-8 or more than {MAX_BUCKET_CHARS} characters)"
    return None


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str) or not key:
        return f"is {_kind(key)}, not an object key"
    if not _utf8(key):
        return "is not valid UTF-8"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} UTF-8 bytes"
    return None


def _valid_bucket_name(bucket: str) -> bool:
    return bool(BUCKET_NAME.fullmatch(bucket)) and ".." not in bucket and not IP_ADDRESS.fullmatch(bucket)


# What a job's fields must be, for callers that check them before a message exists (core/bulk.py).
valid_bucket_name = _valid_bucket_name
prefix_problem = _prefix_problem


# ---- problems with a known source ----------------------------------------------------------------------

class _Problems:
    """The field problems of one message whose source is known, as one permanent JobError."""

    def __init__(self, source: str):
        self.source = source
        self.errors: list[dict[str, Any]] = []

    def add(self, field: str, message: str, value: Any = ..., allowed: str | None = None) -> None:
        error: dict[str, Any] = {"field": _safe(field, 120), "source": self.source, "message": message}
        if value is not ... and (value is None or isinstance(value, (str, int, float, bool))):
            error["value"] = _shown(value)
        if allowed:
            error["allowed"] = allowed
        self.errors.append(error)

    def unknown(self, obj: dict[str, Any], allowed: tuple[str, ...], prefix: str, what: str) -> None:
        for name in obj:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, 1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.add(f"{prefix}{name}", f"is not a field of {what}{hint}", allowed=", ".join(allowed))

    def token(self, value: Any, field: str) -> str | None:
        """An optional version id or ETag: a non-empty string without control characters."""
        if value is None:
            return None
        if not isinstance(value, str):
            self.add(field, f"must be a string, not {_kind(value)}", value)
        elif not value or len(value) > MAX_TOKEN_CHARS or not _utf8(value) or _has_control(value):
            self.add(field, f"must be 1 to {MAX_TOKEN_CHARS} characters without control characters", value)
        else:
            return value
        return None

    def size(self, value: Any, field: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.add(field, "must be a whole number of bytes (0 or more)", value)
            return None
        return value

    def error(self) -> JobError | None:
        if not self.errors:
            return None
        parts = []
        for e in self.errors:
            value = f" = {json.dumps(e['value'], ensure_ascii=False)}" if "value" in e else ""
            allowed = f" (allowed: {e['allowed']})" if "allowed" in e else ""
            parts.append(f"{e['field']}{value} {e['message']}{allowed}")
        return JobError("invalid_parameters", f"invalid {self.source}: " + "; ".join(parts),
                        details={"errors": self.errors})


# ---- helpers -------------------------------------------------------------------------------------------

def _loads(text: Any, what: str) -> Any:
    if not isinstance(text, (str, bytes, bytearray)):
        raise _unreadable(f"{what} is {_kind(text)}, not JSON text", text)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, too many digits, too deep
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise _unreadable(f"{what} is not JSON ({reason})", text, f"text of {len(text)} characters") from None


def _at(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., None where a level is missing or is not an object."""
    for name in path:
        obj = obj.get(name) if isinstance(obj, dict) else None
    return obj


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _unreadable(problem: str, message: Any, shape: str | None = None) -> UnreadableMessage:
    shape = shape or describe(message)
    return UnreadableMessage(f"unreadable message: {problem}; the message is {shape}",
                             details={"problem": problem, "shape": shape})


_NAME = re.compile(r"[A-Za-z0-9_.:@$-]{1,64}")


def describe(value: Any) -> str:
    """The structure of a message (top-level keys and their types), never its values: prompts and keys
    must not reach the logs."""
    if isinstance(value, dict):
        if not value:
            return "an empty JSON object"
        names = [f"{_name(k)} ({_kind(v, article=False)})" for k, v in list(value.items())[:12]]
        more = f" and {len(value) - 12} more" if len(value) > 12 else ""
        return "a JSON object with keys " + ", ".join(names) + more
    return _kind(value)


def _name(key: Any) -> str:
    if isinstance(key, str) and _NAME.fullmatch(key):
        return key
    return f"<a {len(key)}-character name>" if isinstance(key, str) else f"<a {type(key).__name__} name>"


def _kind(value: Any, article: bool = True) -> str:
    """A value's JSON type and size, e.g. 'a JSON string of 12 characters' (never the value itself)."""
    if value is None:
        return "missing (or null)" if article else "null"
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, (int, float)):
        kind = "number"
    elif isinstance(value, str):
        kind = f"string of {len(value)} characters" if value else "empty string"
    elif isinstance(value, dict):
        kind = f"object of {len(value)} keys" if value else "empty object"
    elif isinstance(value, (list, tuple)):
        kind = f"array of {len(value)} items" if value else "empty array"
    else:
        return type(value).__name__
    if not article:
        return kind.split(" of ")[0]
    return "a JSON " + kind


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:   # lone surrogates: JSON "\ud800" decodes to one
        return False
    return True


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _safe(text: str, limit: int) -> str:
    """Text that can be written as UTF-8 JSON (lone surrogates escaped), at most `limit` characters."""
    text = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(value: Any) -> Any:
    """A scalar as an error may echo it: short, writable, finite."""
    if isinstance(value, str):
        return _safe(value, 100)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
