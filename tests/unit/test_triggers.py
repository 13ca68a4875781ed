"""Queue message bodies -> Triggers (core/triggers.py)."""
from __future__ import annotations

import json

import pytest

from img2img.core.errors import JobError
from img2img.core.triggers import Trigger, UnreadableMessage, job_trigger, parse_body, parse_message

ENCODED = "uploads/my+photo%2B1+%C3%BC.png"
DECODED = "uploads/my photo+1 ü.png"


def s3_record(key, event="ObjectCreated:Put", bucket="in-bucket", **obj):
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-west-2", "eventName": event,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": key, **obj}}}


def test_s3_notification_key_is_decoded_exactly_once():
    body = json.dumps({"Records": [s3_record(ENCODED, size=1234, eTag="abc", versionId="v1",
                                             sequencer="0055AED6DCD90281E5")]})
    [trigger] = parse_body(body)
    assert trigger == Trigger("object", "in-bucket", DECODED, version_id="v1", etag="abc", size=1234, origin="s3")


@pytest.mark.parametrize("encoded, decoded", [
    ("a%2Fb%2Fc.png", "a/b/c.png"),            # moto writes / as %2F
    ("100%25+done.png", "100% done.png"),
    ("%E7%8C%AB.jpg", "猫.jpg"),
    ("plain.jpg", "plain.jpg"),
    ("a%252B.png", "a%2B.png"),                 # decoded once, not twice
])
def test_s3_key_decoding_cases(encoded, decoded):
    [trigger] = parse_message({"Records": [s3_record(encoded)]})
    assert trigger.key == decoded


def test_multiple_records_become_multiple_triggers_in_order():
    message = {"Records": [s3_record("a.png"), s3_record("b.jpg", bucket="other"),
                           s3_record("c.png", event="ObjectCreated:CompleteMultipartUpload")]}
    triggers = parse_message(message)
    assert [(t.bucket, t.key) for t in triggers] == [("in-bucket", "a.png"), ("other", "b.jpg"),
                                                     ("in-bucket", "c.png")]


@pytest.mark.parametrize("event", ["ObjectRemoved:Delete", "ObjectRestore:Completed", "LifecycleExpiration:Delete",
                                   "ObjectTagging:Put", "s3:ReducedRedundancyLostObject"])
def test_non_object_created_records_are_ignored(event):
    message = {"Records": [s3_record("gone.png", event=event), s3_record("new.png")]}
    assert [t.key for t in parse_message(message)] == ["new.png"]


def test_s3_test_event_yields_no_trigger():
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-01T00:00:00.000Z",
                       "Bucket": "in-bucket", "RequestId": "R", "HostId": "H"})
    assert parse_body(body) == []


def test_empty_records_yield_no_trigger():
    assert parse_message({"Records": []}) == []
    assert parse_message({"Records": None}) == []


def eventbridge(detail_type="Object Created", key=ENCODED):
    return {"version": "0", "id": "e1", "detail-type": detail_type, "source": "aws.s3", "account": "123456789012",
            "time": "2026-11-01T00:00:00Z", "region": "us-west-2", "resources": ["arn:aws:s3:::in-bucket"],
            "detail": {"version": "0", "bucket": {"name": "in-bucket"},
                       "object": {"key": key, "size": 99, "etag": "e", "version-id": "v9", "sequencer": "1"},
                       "request-id": "r", "requester": "123456789012", "reason": "PutObject"}}


def test_eventbridge_object_created_envelope():
    [trigger] = parse_body(json.dumps(eventbridge()))
    assert trigger == Trigger("object", "in-bucket", DECODED, version_id="v9", etag="e", size=99,
                              origin="eventbridge")


@pytest.mark.parametrize("detail_type", ["Object Deleted", "Object Restore Completed", "Object Tags Added"])
def test_other_eventbridge_s3_events_are_ignored(detail_type):
    assert parse_message(eventbridge(detail_type)) == []


def test_image_generation_requested_event_with_s3_uri():
    message = {"version": "0", "detail-type": "ImageGenerationRequested", "source": "my.app",
               "detail": {"source": "s3://in-bucket/a/b/my photo.png", "params": {"prompt": "a cat", "seed": 3},
                          "job_id": "job-42", "output": {"prefix": "custom/"}}}
    [trigger] = parse_message(message)
    assert (trigger.kind, trigger.bucket, trigger.key) == ("job", "in-bucket", "a/b/my photo.png")
    assert trigger.params == {"prompt": "a cat", "seed": 3}
    assert (trigger.job_id, trigger.output, trigger.origin) == ("job-42", {"prefix": "custom/"}, "eventbridge")


def test_job_message_with_a_source_object():
    body = json.dumps({"type": "img2img.job", "source": {"bucket": "in-b", "key": "k.png", "version_id": "v2"},
                       "params": {"prompt": "x"}, "origin": "api"})
    [trigger] = parse_body(body)
    assert (trigger.kind, trigger.bucket, trigger.key, trigger.version_id) == ("job", "in-b", "k.png", "v2")
    assert trigger.origin == "api" and trigger.params == {"prompt": "x"} and trigger.error is None


def test_job_message_with_flat_bucket_and_key():
    [trigger] = parse_message({"type": "img2img.job", "bucket": "in-b", "key": "k.png"})
    assert (trigger.bucket, trigger.key, trigger.params, trigger.origin) == ("in-b", "k.png", None, "job")
    assert trigger.error is None


def test_job_key_from_an_s3_uri_is_taken_literally():
    [trigger] = parse_message({"type": "img2img.job", "source": "s3://in-b/dir/a+b%20c.png"})
    assert trigger.key == "dir/a+b%20c.png" and trigger.error is None


def test_sidecar_check_message():
    body = json.dumps({"type": "img2img.sidecar-check", "bucket": "b", "key": "a/cat.jpg", "version_id": "v3",
                       "etag": "\"e\""})
    [trigger] = parse_body(body)
    assert trigger == Trigger("check", "b", "a/cat.jpg", version_id="v3", etag="\"e\"", origin="deferred")


@pytest.mark.parametrize("body, fragment", [
    ("not json", "not JSON"),
    ("", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('"a string"', "not a JSON object"),
    ('{"hello": "world"}', "neither an S3 event"),
    ('{"type": "img2img.job"}', "needs a source"),
    ('{"type": "img2img.job", "source": "https://b/k.png"}', "is not an s3://bucket/key URI"),
    ('{"type": "img2img.job", "source": "s3://bucket-only"}', "is not an s3://bucket/key URI"),
    ('{"type": "img2img.job", "source": "s3://b/"}', "needs a source"),
    ('{"type": "img2img.job", "source": {"bucket": "b"}}', "needs a source"),
    ('{"detail-type": "ImageGenerationRequested", "detail": {}}', "needs a source"),
])
def test_malformed_bodies_are_clear_job_errors(body, fragment):
    with pytest.raises(UnreadableMessage) as info:  # no source: nothing to record a failure for
        parse_body(body)
    assert isinstance(info.value, JobError)
    assert info.value.code == "invalid_parameters" and not info.value.retryable
    assert fragment in info.value.message


@pytest.mark.parametrize("body, fragment", [
    ('{"type": "img2img.job", "source": "s3://in-b/k.png", "params": [1]}', "params must be a JSON object"),
    ('{"type": "img2img.job", "source": "s3://in-b/k.png", "params": "prompt=cat"}', "params must be a JSON object"),
])
def test_a_bad_field_of_a_job_with_a_known_source_is_a_trigger_with_an_error(body, fragment):
    [trigger] = parse_body(body)  # the source is known: the pipeline records the failure for it
    assert (trigger.bucket, trigger.key, trigger.params) == ("in-b", "k.png", None)
    assert trigger.error.code == "invalid_parameters" and not trigger.error.retryable
    assert fragment in trigger.error.message


@pytest.mark.parametrize("message", [
    {"Records": [{"eventName": "ObjectCreated:Put"}]},
    {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}}]},
    {"Records": "oops"},
    {"Records": [None]},
    {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}},
    {"source": "aws.s3", "detail-type": "Object Created", "detail": None},
    {"type": "img2img.sidecar-check", "key": "a.png"},
])
def test_structurally_broken_events_are_job_errors_not_crashes(message):
    with pytest.raises(UnreadableMessage) as info:
        parse_message(message)
    assert info.value.code == "invalid_parameters"
