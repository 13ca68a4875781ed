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


# ---- real envelopes (shapes from the S3, SNS and EventBridge user guides) -------------------------------

AWS_S3_NOTIFICATION = {"Records": [{
    "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-west-2",
    "eventTime": "1970-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
    "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"},
    "requestParameters": {"sourceIPAddress": "127.0.0.1"},
    "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810",
                         "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
    "s3": {"s3SchemaVersion": "1.0", "configurationId": "testRule",
           "bucket": {"name": "amzn-s3-demo-bucket", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                      "arn": "arn:aws:s3:::amzn-s3-demo-bucket"},
           "object": {"key": "photos/Happy+Face%C3%BC.jpg", "size": 1024,
                      "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                      "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko", "sequencer": "0055AED6DCD90281E5"}}}]}

AWS_TEST_EVENT = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2014-10-13T15:57:02.089Z",
                  "Bucket": "amzn-s3-demo-bucket", "RequestId": "5582815E1AEA5ADF",
                  "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}

AWS_EVENTBRIDGE_OBJECT_CREATED = {
    "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
    "source": "aws.s3", "account": "111122223333", "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
    "resources": ["arn:aws:s3:::amzn-s3-demo-bucket1"],
    "detail": {"version": "0", "bucket": {"name": "amzn-s3-demo-bucket1"},
               "object": {"key": "my+photo%2B1+%C3%BC.png", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                          "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e", "sequencer": "617f08299329d189"},
               "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "source-ip-address": "1.2.3.4",
               "reason": "PutObject"}}

AWS_REQUESTED = {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "ImageGenerationRequested",  # noqa: E501
                 "source": "my.catalog", "account": "111122223333", "time": "2026-11-01T00:00:00Z",
                 "region": "us-west-2", "resources": [],
                 "detail": {"source": "s3://my-input/catalog/sku-42.jpg",
                            "params": {"prompt": "studio photo, white background", "seed": 7},
                            "output": {"prefix": "catalog-v2/"}, "job_id": "sku-42.v2"}}


def sns(inner: dict) -> dict:
    """An SNS notification as SNS delivers it to SQS without raw message delivery."""
    return {"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:s3-uploads", "Subject": "Amazon S3 Notification",
            "Message": json.dumps(inner), "Timestamp": "2012-05-02T00:54:06.655Z", "SignatureVersion": "1",
            "Signature": "EXAMPLEw6JRN", "SigningCertURL": "https://sns.us-west-2.amazonaws.com/cert.pem",
            "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe"}


def test_the_documented_s3_notification():
    [trigger] = parse_body(json.dumps(AWS_S3_NOTIFICATION))
    assert trigger == Trigger("object", "amzn-s3-demo-bucket", "photos/Happy Faceü.jpg",
                              version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
                              etag="d41d8cd98f00b204e9800998ecf8427e", size=1024, origin="s3")


def test_an_sns_wrapped_s3_notification_is_the_same_upload():
    assert parse_body(json.dumps(sns(AWS_S3_NOTIFICATION))) == parse_message(AWS_S3_NOTIFICATION)


def test_an_sns_wrapped_test_event_yields_no_trigger():
    assert parse_body(json.dumps(AWS_TEST_EVENT)) == []
    assert parse_body(json.dumps(sns(AWS_TEST_EVENT))) == []


def test_the_documented_eventbridge_object_created_event():
    [trigger] = parse_message(AWS_EVENTBRIDGE_OBJECT_CREATED)
    assert trigger == Trigger("object", "amzn-s3-demo-bucket1", DECODED[len("uploads/"):],
                              version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                              etag="b1946ac92492d2347c6235b4d2611184", size=5, origin="eventbridge")


def test_moto_eventbridge_spelling_of_the_etag_and_an_unversioned_bucket():
    message = json.loads(json.dumps(AWS_EVENTBRIDGE_OBJECT_CREATED))
    obj = message["detail"]["object"]
    obj["eTag"], obj["version-id"] = obj.pop("etag"), None
    [trigger] = parse_message(message)
    assert (trigger.etag, trigger.version_id, trigger.error) == ("b1946ac92492d2347c6235b4d2611184", None, None)


def test_the_documented_image_generation_requested_event():
    [trigger] = parse_message(AWS_REQUESTED)
    assert trigger == Trigger("job", "my-input", "catalog/sku-42.jpg",
                              params={"prompt": "studio photo, white background", "seed": 7}, job_id="sku-42.v2",
                              output={"prefix": "catalog-v2/"}, origin="eventbridge")


def test_an_sns_notification_that_is_no_json_is_unreadable():
    with pytest.raises(UnreadableMessage, match="SNS notification's Message is not JSON"):
        parse_message({**sns(AWS_TEST_EVENT), "Message": "a cat on the moon"})


# ---- a known source with a bad field: one Trigger carrying the error ------------------------------------

def requested(**detail):
    return {**AWS_REQUESTED, "detail": {"source": "s3://my-input/a.png", **detail}}


@pytest.mark.parametrize("detail, field, fragment", [
    ({"job_id": "has space"}, "job_id", "is not a valid job id"),
    ({"job_id": "-starts-with-dash"}, "job_id", "is not a valid job id"),
    ({"job_id": "x" * 129}, "job_id", "is not a valid job id"),
    ({"job_id": "ünïcode"}, "job_id", "is not a valid job id"),
    ({"job_id": "id\n"}, "job_id", "is not a valid job id"),
    ({"job_id": 42}, "job_id", "is not a valid job id"),
    ({"params": ["prompt", "cat"]}, "params", "must be a JSON object"),
    ({"output": "custom/"}, "output", "must be an object"),
    ({"output": {"prefix": "/abs/"}}, "output.prefix", "starts with '/'"),
    ({"output": {"prefix": "a/../../etc/"}}, "output.prefix", "'..' segment"),
    ({"output": {"prefix": ".."}}, "output.prefix", "'..' segment"),
    ({"output": {"prefix": "a/./b/"}}, "output.prefix", "'.' or '..' segment"),
    ({"output": {"prefix": "tab\there/"}}, "output.prefix", "control character"),
    ({"output": {"prefix": "x" * 257}}, "output.prefix", "longer than 256 UTF-8 bytes"),
    ({"output": {"prefix": "ü" * 129}}, "output.prefix", "longer than 256 UTF-8 bytes"),
    ({"output": {"prefix": 7}}, "output.prefix", "must be a string"),
    ({"output": {"prefix": "ok/", "bucket": "elsewhere"}}, "output.bucket", "is not a field of output"),
    ({"parms": {"prompt": "x"}}, "parms", "did you mean params?"),
    ({"source": {"bucket": "my-input", "key": "a.png", "version_id": 3}}, "source.version_id", "must be a string"),
    ({"source": {"bucket": "my-input", "key": "a.png", "versionId": "v"}}, "source.versionId", "not a field"),
    ({"source": "s3://My_Bucket/a.png"}, "source.bucket", "not a valid S3 bucket name"),
    ({"source": "s3://192.168.0.1/a.png"}, "source.bucket", "not a valid S3 bucket name"),
    ({"source": "s3://a..b/a.png"}, "source.bucket", "not a valid S3 bucket name"),
])
def test_a_bad_field_of_an_event_is_a_trigger_with_a_specific_error(detail, field, fragment):
    [trigger] = parse_message(requested(**detail))
    assert trigger.kind == "job" and trigger.bucket and trigger.key
    error = trigger.error
    assert error.code == "invalid_parameters" and not error.retryable
    [entry] = error.details["errors"]
    assert entry["field"] == field and entry["source"] == "event detail" and fragment in entry["message"]
    assert error.message.startswith("invalid event detail: ") and field in error.message and fragment in error.message
    json.dumps(error.as_record(), ensure_ascii=False).encode("utf-8")  # the failure record can be written


def test_an_invalid_field_never_reaches_the_trigger():
    [trigger] = parse_message(requested(job_id="bad id", params="prompt=x", output={"prefix": "/x/"}))
    assert (trigger.job_id, trigger.params, trigger.output) == (None, None, None)
    assert [e["field"] for e in trigger.error.details["errors"]] == ["params", "job_id", "output.prefix"]


def test_the_error_says_what_is_allowed_and_echoes_the_bad_scalar():
    [trigger] = parse_message(requested(job_id="bad id"))
    [entry] = trigger.error.details["errors"]
    assert entry["value"] == "bad id" and "letters, digits" in entry["allowed"]
    assert 'job_id = "bad id" is not a valid job id (allowed: 1 to 128 letters' in trigger.error.message


@pytest.mark.parametrize("prefix, normalised", [("custom", "custom/"), ("a/b/", "a/b/"), ("", ""),
                                                ("日本/写真", "日本/写真/"), ("x" * 256, "x" * 256 + "/")])
def test_output_prefix_is_normalised_to_end_with_a_slash(prefix, normalised):
    [trigger] = parse_message(requested(output={"prefix": prefix}))
    assert trigger.error is None and trigger.output == {"prefix": normalised}


def test_nulls_mean_absent():
    [trigger] = parse_message(requested(params=None, job_id=None, output=None))
    assert trigger.error is None and (trigger.params, trigger.job_id, trigger.output) == (None, None, None)
    [trigger] = parse_message(requested(output={"prefix": None}))
    assert trigger.error is None and trigger.output is None


def test_a_job_id_may_be_128_characters():
    [trigger] = parse_message(requested(job_id="A" + "b_.-9" * 25 + "xy"))
    assert trigger.error is None and len(trigger.job_id) == 128


@pytest.mark.parametrize("obj, field", [
    ({"size": "1024"}, "size"), ({"size": -1}, "size"), ({"size": True}, "size"), ({"size": 1.5}, "size"),
    ({"versionId": 7}, "versionId"), ({"versionId": ""}, "versionId"), ({"eTag": {"v": 1}}, "eTag"),
])
def test_a_bad_field_of_an_s3_record_is_a_trigger_with_an_error(obj, field):
    [trigger] = parse_message({"Records": [s3_record("a.png", **obj)]})
    assert (trigger.bucket, trigger.key, trigger.kind) == ("in-bucket", "a.png", "object")
    [entry] = trigger.error.details["errors"]
    assert entry["field"] == f"Records[0].s3.object.{field}" and entry["source"] == "S3 event notification"


def test_a_bad_size_in_an_eventbridge_event_is_a_trigger_with_an_error():
    message = json.loads(json.dumps(AWS_EVENTBRIDGE_OBJECT_CREATED))
    message["detail"]["object"]["size"] = "five"
    [trigger] = parse_message(message)
    assert trigger.size is None and trigger.error.details["errors"][0]["field"] == "detail.object.size"


def test_legacy_bucket_names_in_s3s_own_events_are_taken_as_they_are():
    [trigger] = parse_message({"Records": [s3_record("a.png", bucket="Legacy_Bucket")]})
    assert trigger.bucket == "Legacy_Bucket" and trigger.error is None


# ---- direct invoke: job_trigger ------------------------------------------------------------------------

def test_direct_invoke_input_is_validated_like_an_event():
    trigger = job_trigger({"source": {"bucket": "my-input", "key": "a.png"}, "job_id": "sfn run 1",
                           "extra": 1}, origin="direct")
    assert trigger.origin == "direct" and trigger.job_id is None
    assert {e["field"] for e in trigger.error.details["errors"]} == {"job_id", "extra"}
    assert all(e["source"] == "direct invoke input" for e in trigger.error.details["errors"])


@pytest.mark.parametrize("job", [None, {}, [], "s3://my-input/a.png", {"params": {"prompt": "x"}},
                                 {"bucket": "my-input", "key": "a.png"}])
def test_direct_invoke_input_without_a_source_is_unreadable(job):
    with pytest.raises(UnreadableMessage):
        job_trigger(job, origin="direct")


def test_our_own_job_messages_may_carry_their_envelope_fields():
    trigger = job_trigger({"type": "img2img.job", "job_id": "api-0123", "source": {"bucket": "my-input",
                           "key": "api/api-0123/input.png", "version_id": None}, "params": {"prompt": "x"},
                           "output": {"prefix": "api/api-0123/"}, "origin": "api"}, origin="api")
    assert trigger.error is None and trigger.origin == "api" and trigger.output == {"prefix": "api/api-0123/"}


def test_a_job_message_with_a_strange_origin_is_an_error_not_a_new_origin():
    [trigger] = parse_message({"type": "img2img.job", "source": "s3://my-input/a.png", "origin": {"x": 1}})
    assert trigger.origin == "job" and trigger.error.details["errors"][0]["field"] == "origin"


# ---- no source: UnreadableMessage, describing the structure, never the content ------------------------

PROMPT = "a secret cat on the moon"


@pytest.mark.parametrize("message", [
    {"detail-type": "Something Else", "detail": {"prompt": PROMPT}},
    {"type": "img2img.job", "source": f"https://{PROMPT}", "params": {"prompt": PROMPT}},
    {"type": "img2img.job", "source": {"bucket": "my-input", "key": ""}, "params": {"prompt": PROMPT}},
    {"detail-type": "ImageGenerationRequested", "detail": {"params": {"prompt": PROMPT}}},
    {PROMPT: PROMPT},
    {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": 5}}}],
     "note": PROMPT},
    {"Records": [PROMPT], "x": [PROMPT]},
    {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "a.png"}}}]},
    {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": "b", "object": "a.png"}},
    {"source": "aws.s3", "detail-type": ["Object Created"], "detail": {}},
    {"Records": [{"eventName": "ObjectCreated:Put", "s3": "s3://b/a.png"}]},
    {"type": "img2img.job", "source": "s3://my-input/" + "k" * 1025},
    {"type": "img2img.job", "source": "s3://my-input/\udc80.png"},
    sns(sns(AWS_TEST_EVENT)),
    {"Type": "Notification", "Message": {"Records": []}},
])
def test_messages_without_a_source_are_unreadable_and_do_not_echo_content(message):
    with pytest.raises(UnreadableMessage) as info:
        parse_message(message)
    assert info.value.code == "invalid_parameters" and not info.value.retryable
    text = info.value.message + json.dumps(info.value.details)
    assert PROMPT not in text and "secret" not in text and "moon" not in text
    assert "unreadable message" in info.value.message


def test_unreadable_describes_top_level_keys_and_types():
    with pytest.raises(UnreadableMessage) as info:
        parse_message({"hello": "world", "n": 1, "items": [1], "a very long key with spaces": None})
    assert ("a JSON object with keys hello (string), n (number), items (array), <a 27-character name> (null)"
            in info.value.message)
    assert "world" not in info.value.message


def test_deeply_nested_json_is_unreadable_not_a_recursion_error():
    with pytest.raises(UnreadableMessage, match="not JSON"):
        parse_body("[" * 100_000 + "]" * 100_000)
