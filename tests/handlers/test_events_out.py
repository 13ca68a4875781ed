"""Outgoing events: what the worker and the API publish matches docs/events/*.schema.json."""
from __future__ import annotations

import json

import boto3
import pytest
import schema_check
from aws_world import INPUT, png_bytes, s3_body, sd35_ok


@pytest.fixture
def bus(world):
    """The pipeline's bus in moto with a rule copying every event to a queue (as the local stack does)."""
    from img2img.aws.events import EventBridgePublisher

    events, sqs = boto3.client("events", region_name="us-east-1"), world.sqs
    events.create_event_bus(Name="img2img-bus")
    queue_url = sqs.create_queue(QueueName="img2img-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName="img2img-bus", EventPattern=json.dumps({"source": ["bedrock-img2img"]}))
    events.put_targets(Rule="all", EventBusName="img2img-bus", Targets=[{"Id": "q", "Arn": arn}])
    world.pipeline.events = EventBridgePublisher("img2img-bus")

    def published() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return published


def test_every_schema_is_valid_json_and_names_the_documented_fields():
    for name in ("ImageGenerationSucceeded", "ImageGenerationFailed"):
        schema = schema_check.load(name)
        assert set(schema["required"]) >= {"job_id", "source", "outputs", "model_id", "seed", "error_code"}
    from img2img.core.errors import ERROR_CODES

    assert set(schema_check.load("ImageGenerationFailed")["properties"]["error_code"]["enum"]) == set(ERROR_CODES)


def test_succeeded_event_matches_its_schema(world, bus):
    world.put("ev/cat.png", png_bytes((256, 256)), {"prompt": "a cat", "seed": "12"})
    world.stub.add_response("invoke_model", sd35_ok(seed=12))
    world.run(s3_body("ev/cat.png"))
    [event] = bus()
    assert (event["source"], event["detail-type"]) == ("bedrock-img2img", "ImageGenerationSucceeded")
    assert schema_check.check(event["detail"], schema_check.load("ImageGenerationSucceeded")) == []
    assert event["detail"]["seed"] == 12 and event["detail"]["outputs"][0]["key"] == "ev/cat.png.png"
    assert event["detail"] == json.loads(json.dumps(event["detail"]))


def test_failed_event_matches_its_schema(world, bus):
    world.put("ev/bad.png", b"not an image", {"prompt": "x"})
    world.run(s3_body("ev/bad.png"))
    [event] = bus()
    assert event["detail-type"] == "ImageGenerationFailed"
    assert schema_check.check(event["detail"], schema_check.load("ImageGenerationFailed")) == []
    assert event["detail"]["error_code"] == "invalid_image"


def test_the_checker_catches_mistakes():
    schema = schema_check.load("ImageGenerationSucceeded")
    detail = {"job_id": "j", "status": "succeeded", "source": {"bucket": INPUT, "key": "k", "version_id": None,
                                                                "etag": "e"},
              "record": {"bucket": "o", "key": "k.json"}, "outputs": [{"bucket": "o", "key": "k.png"}],
              "model_id": "m", "seed": 1, "error_code": None}
    assert schema_check.check(detail, schema) == []
    assert schema_check.check({**detail, "seed": "1"}, schema)
    assert schema_check.check({**detail, "outputs": []}, schema)
    assert schema_check.check({**detail, "extra": 1}, schema)
    assert schema_check.check({k: v for k, v in detail.items() if k != "job_id"}, schema)
