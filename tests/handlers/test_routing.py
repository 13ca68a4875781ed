"""What the worker accepts, what it ignores, and what it publishes."""
from __future__ import annotations

import json

import boto3
from aws_world import INPUT, OUTPUT, png_bytes, s3_body, sd35_ok


def test_s3_test_event_is_skipped(world):
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": INPUT})
    assert world.run(body) == {"batchItemFailures": []}
    assert world.output_keys() == []


def test_eventbridge_object_created_envelope_runs_the_job(world):
    world.put("eb/my photo+1 ü.png", png_bytes((200, 300)), {"prompt": "x"})
    world.stub.add_response("invoke_model", sd35_ok())
    envelope = {"version": "0", "detail-type": "Object Created", "source": "aws.s3", "detail": {
        "bucket": {"name": INPUT}, "object": {"key": "eb/my+photo%2B1+%C3%BC.png", "size": 10}}}
    world.run(json.dumps(envelope))
    assert world.record("eb/my photo+1 ü.png")["status"] == "succeeded"


def test_outputs_excluded_prefixes_and_other_buckets_are_ignored(world, monkeypatch):
    from img2img import settings

    monkeypatch.setenv("IMG2IMG_EXCLUDED_PREFIXES", "tmp/,raw/")
    settings.get_settings.cache_clear()
    world.pipeline.settings = settings.get_settings()
    world.put("tmp/a.png", png_bytes(), {"prompt": "x"})
    world.run(s3_body("a.png.png", bucket=OUTPUT), s3_body("tmp/a.png"), s3_body("a.png", bucket="elsewhere"))
    assert world.output_keys() == []


def test_unsupported_suffixes_are_skipped_and_unreadable_messages_head_for_the_dlq(world):
    """A message that names no job can have no record: it fails every delivery until the queue moves it
    to the (alarmed) DLQ, never deleted silently; a non-image key is simply not a job."""
    world.put("notes.txt", b"hello")
    assert world.run(s3_body("notes.txt"), "not json", json.dumps({"hello": 1})) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    assert world.output_keys() == []


def test_job_message_with_inline_params_keeps_its_job_id(world):
    world.put("api/upload.png", png_bytes((256, 256)))
    world.stub.add_response("invoke_model", sd35_ok(seed=9))
    job = {"type": "img2img.job", "job_id": "job-123", "source": f"s3://{INPUT}/api/upload.png",
           "params": {"prompt": "from the api", "seed": 9}}
    world.run(json.dumps(job))
    record = world.record("api/upload.png")
    assert record["job_id"] == "job-123" and record["param_sources"]["prompt"] == "job request"


def test_outcomes_are_published_on_the_event_bus(world, monkeypatch):
    events = boto3.client("events", region_name="us-east-1")
    events.create_event_bus(Name="img2img-bus")
    queue_url = world.sqs.create_queue(QueueName="events-tap")["QueueUrl"]
    arn = world.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName="img2img-bus", EventPattern=json.dumps({"source": ["bedrock-img2img"]}))
    events.put_targets(Rule="all", EventBusName="img2img-bus", Targets=[{"Id": "q", "Arn": arn}])
    from img2img.aws.events import EventBridgePublisher

    world.pipeline.events = EventBridgePublisher("img2img-bus")
    world.put("ev/ok.png", png_bytes((256, 256)), {"prompt": "x"})
    world.put("ev/bad.png", b"nope", {"prompt": "x"})
    world.stub.add_response("invoke_model", sd35_ok(seed=4))
    world.run(s3_body("ev/ok.png"), s3_body("ev/bad.png"))

    messages = world.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    got = {json.loads(m["Body"])["detail-type"]: json.loads(m["Body"])["detail"] for m in messages}
    assert got["ImageGenerationSucceeded"]["seed"] == 4
    assert got["ImageGenerationSucceeded"]["outputs"] == [{"bucket": OUTPUT, "key": "ev/ok.png.png"}]
    assert got["ImageGenerationFailed"]["error_code"] == "invalid_image"
    assert got["ImageGenerationFailed"]["source"]["key"] == "ev/bad.png"


def test_an_event_for_an_overwritten_version_is_superseded(world):
    old = world.put("v/cat.png", png_bytes((128, 128)), {"prompt": "old"})
    world.put("v/cat.png", png_bytes((128, 128), (0, 0, 0)), {"prompt": "new"})
    world.run(s3_body("v/cat.png", versionId=old["VersionId"]))
    assert world.output_keys() == []  # the newer version's own event decides


def test_log_lines_of_a_job_carry_its_job_id_as_correlation_id(world):
    import io
    import logging

    from img2img.observability import logger

    out = io.StringIO()
    tap = logging.StreamHandler(out)
    tap.setFormatter(logger.registered_formatter)  # the JSON lines CloudWatch gets
    logger.addHandler(tap)
    try:
        world.put("log/cat.png", png_bytes((256, 256)), {"prompt": "a secret prompt"})
        world.stub.add_response("invoke_model", sd35_ok())
        world.run(s3_body("log/cat.png"))
    finally:
        logger.removeHandler(tap)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    job_id = world.record("log/cat.png")["job_id"]
    finished = [line for line in lines if line["message"] == "job finished"]
    assert finished and all(line["correlation_id"] == job_id for line in finished)
    assert not any("a secret prompt" in json.dumps(line) for line in lines)  # prompts only at DEBUG
