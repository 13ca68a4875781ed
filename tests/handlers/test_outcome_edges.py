"""Outcomes at the edges of the promise: inputs that vanish, names that do not fit, faults nobody foresaw."""
from __future__ import annotations

import json

import pytest
from aws_world import INPUT, OUTPUT, png_bytes, s3_body, sd35_ok
from botocore.exceptions import ClientError, ParamValidationError

from img2img.aws.bedrock import classify
from img2img.aws.s3 import _fail
from img2img.core.records import LONG_KEYS_DIR, MAX_KEY_BYTES


def job_body(source: str, **job) -> str:
    return json.dumps({"type": "img2img.job", "source": source, "params": {"prompt": "x"}, **job})


def test_an_image_deleted_while_its_model_call_runs_gets_a_source_not_found_record_and_no_output(world):
    world.put("gone/cat.png", png_bytes((256, 256)), {"prompt": "a cat"})

    class DeletingModel:
        calls = 0

        def invoke(self, model_id, body):
            self.calls += 1
            for version in world.s3.list_object_versions(Bucket=INPUT, Prefix="gone/cat.png")["Versions"]:
                world.s3.delete_object(Bucket=INPUT, Key="gone/cat.png", VersionId=version["VersionId"])
            return json.loads(sd35_ok()["body"].read())

    world.pipeline.model = model = DeletingModel()
    assert world.run(s3_body("gone/cat.png")) == {"batchItemFailures": []}
    assert world.output_keys() == ["gone/cat.png.json"]
    record = world.record("gone/cat.png")
    assert record["error"]["code"] == "source_not_found" and "deleted while the job ran" in record["error"]["message"]
    assert model.calls == 1


def test_a_job_naming_a_version_that_does_not_exist_is_recorded_not_skipped(world):
    world.put("v/cat.png", png_bytes((256, 256)))
    world.run(job_body(f"s3://{INPUT}/v/cat.png", job_id="job-1") .replace(
        '"source": "s3://img2img-test-input/v/cat.png"',
        f'"source": {{"bucket": "{INPUT}", "key": "v/cat.png", "version_id": "no-such-version"}}'))
    record = world.record("v/cat.png")
    assert record["error"]["code"] == "source_not_found" and "no-such-version" in record["error"]["message"]


def test_an_input_key_too_long_for_its_output_fails_before_the_call_with_a_record_it_can_find(world):
    key = "long/" + "k" * (MAX_KEY_BYTES - 5 - 4) + ".png"  # a valid S3 key of 1,024 bytes; its outputs are longer
    assert len(key.encode()) <= MAX_KEY_BYTES
    world.put(key, png_bytes((256, 256)), {"prompt": "x"})
    world.run(s3_body(key))  # no Bedrock response is queued: a model call would fail the stubber
    [record_key] = world.output_keys()
    assert record_key.startswith(LONG_KEYS_DIR) and record_key.endswith(".json")
    record = json.loads(world.s3.get_object(Bucket=OUTPUT, Key=record_key)["Body"].read())
    assert record["error"]["code"] == "invalid_parameters" and "S3 keys may have at most" in record["error"]["message"]
    assert record["source"]["key"] == key
    world.stub.assert_no_pending_responses()


def test_a_long_unicode_key_keeps_the_output_metadata_within_s3s_2_kb(world):
    key = "meta/" + "写真" * 150 + ".png"  # 909 bytes; percent-encoded ~2,700: over S3 metadata 2 KB
    world.put(key, png_bytes((256, 256)), {"prompt": "x"})
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(s3_body(key))
    assert world.record(key)["status"] == "succeeded"
    meta = world.s3.head_object(Bucket=OUTPUT, Key=key + ".png")["Metadata"]
    assert "source-key" not in meta and len(meta["source-key-sha256"]) == 64


def error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize("code,status,expected,retryable", [
    ("SlowDown", 503, "storage_error", True), ("InternalError", 500, "storage_error", True),
    ("WeirdNew5xx", 502, "storage_error", True), ("AccessDenied", 403, "access_denied", False),
    ("KeyTooLongError", 400, "internal_error", False), ("MetadataTooLarge", 400, "internal_error", False),
    ("InvalidArgument", 400, "internal_error", False),
])
def test_s3_faults_are_transient_only_when_known_to_be(code, status, expected, retryable):
    exc = _fail(error(code, status), "PutObject", OUTPUT, "k")
    assert (exc.code, exc.retryable) == (expected, retryable)


@pytest.mark.parametrize("exc,expected,retryable", [
    (error("ThrottlingException", 429), "throttled", True), (error("SomethingNew", 503), "service_error", True),
    (error("SomethingNew", 429), "throttled", True), (error("SomethingNew", 400), "internal_error", False),
    (error("ResourceNotFoundException", 404), "model_unavailable", False),
    (ParamValidationError(report="bad"), "internal_error", False),
])
def test_bedrock_faults_are_transient_only_when_known_to_be(exc, expected, retryable):
    job_error = classify(exc, "stability.sd3-5-large-v1:0")
    assert (job_error.code, job_error.retryable) == (expected, retryable)
