"""Incoming events: ImageGenerationRequested and S3 Object Created through EventBridge -> job queue -> worker,
as the infra's rules deliver them (moto's EventBridge writes the whole envelope as the SQS body).
The sample Step Functions definition for the direct-invoke function: test_step_functions_sample.py."""
from __future__ import annotations

import base64
import io
import json

import boto3
import pytest
import schema_check
from aws_world import INPUT, model_calls, png_bytes, sd35_ok
from PIL import Image

from img2img.operations import BY_NAME


@pytest.fixture
def routed(world):
    """A bus with the infra's ImageGenerationRequested rule, and the default bus's S3 rule, to the job queue."""
    events = boto3.client("events", region_name="us-east-1")
    events.create_event_bus(Name="img2img-bus")
    arn = world.sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]  # noqa: E501
    events.put_rule(Name="requested", EventBusName="img2img-bus",
                    EventPattern=json.dumps({"detail-type": ["ImageGenerationRequested"]}))
    events.put_targets(Rule="requested", EventBusName="img2img-bus", Targets=[{"Id": "jobs", "Arn": arn}])
    events.put_rule(Name="s3-ingest", EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [INPUT]}, "object": {"key": [{"anything-but": {"prefix": "api/"}}]}}}))
    events.put_targets(Rule="s3-ingest", Targets=[{"Id": "jobs", "Arn": arn}])
    return events


def bodies(world) -> list[str]:
    messages = world.sqs.receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in messages]


def test_image_generation_requested_becomes_a_job(world, routed):
    world.put("req/cat.png", png_bytes((256, 256)))
    detail = {"source": f"s3://{INPUT}/req/cat.png", "params": {"prompt": "a cat", "seed": 21},
              "output": {"prefix": "from-events/"}}
    assert schema_check.check(detail, schema_check.load("ImageGenerationRequested")) == []
    routed.put_events(Entries=[{"EventBusName": "img2img-bus", "Source": "my.app",
                                "DetailType": "ImageGenerationRequested", "Detail": json.dumps(detail)}])
    [body] = bodies(world)
    assert json.loads(body)["detail-type"] == "ImageGenerationRequested"
    world.stub.add_response("invoke_model", sd35_ok(seed=21))
    world.run(body)
    record = json.loads(world.s3.get_object(Bucket="img2img-test-output", Key="events/from-events/req/cat.png.json")["Body"].read())  # noqa: E501
    assert record["status"] == "succeeded" and record["trigger"] == "eventbridge"
    assert record["param_sources"]["seed"] == "eventbridge request"
    assert record["outputs"][0]["key"] == "events/from-events/req/cat.png.png"  # the events/ namespace


@pytest.mark.parametrize("prefix", ["", "api/api-1/", "trips/"])
def test_an_event_sender_cannot_write_outside_the_events_namespace(world, routed, prefix):
    """Upload outputs (`trips/cat.png.json`) and API records (`api/...`) are not an event's to overwrite."""
    world.put("trips/cat.png", png_bytes((256, 256)))
    detail = {"source": f"s3://{INPUT}/trips/cat.png", "params": {"prompt": "a cat"}}
    if prefix:
        detail["output"] = {"prefix": prefix}
    routed.put_events(Entries=[{"EventBusName": "img2img-bus", "Source": "my.app",
                                "DetailType": "ImageGenerationRequested", "Detail": json.dumps(detail)}])
    [body] = bodies(world)
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(body)
    assert world.output_keys() == [f"events/{prefix}trips/cat.png.json", f"events/{prefix}trips/cat.png.png"]


def test_other_detail_types_are_not_routed(world, routed):
    routed.put_events(Entries=[{"EventBusName": "img2img-bus", "Source": "bedrock-img2img",
                                "DetailType": "ImageGenerationSucceeded", "Detail": "{}"}])
    assert bodies(world) == []


def test_s3_object_created_through_eventbridge_runs_the_upload_and_skips_the_api_prefix(world, routed):
    put = world.put("eb/dog.png", png_bytes((256, 256)), {"prompt": "a dog"})
    for key in ("eb/dog.png", "api/api-1/input.png"):
        routed.put_events(Entries=[{"Source": "aws.s3", "DetailType": "Object Created", "Detail": json.dumps({
            "version": "0", "bucket": {"name": INPUT},
            "object": {"key": key, "size": 10, "etag": put["ETag"].strip('"'), "version-id": put["VersionId"],
                       "sequencer": "1"}, "reason": "PutObject"})}])
    [body] = bodies(world)  # the api/ upload is filtered out by the rule
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(body)
    assert world.record("eb/dog.png")["status"] == "succeeded"


def request(routed, detail: dict) -> None:
    routed.put_events(Entries=[{"EventBusName": "img2img-bus", "Source": "my.app",
                                "DetailType": "ImageGenerationRequested", "Detail": json.dumps(detail)}])


def test_an_inpaint_event_with_a_mask_key_sends_the_mask_to_the_inpaint_model(world, routed):
    world.put("req/room.png", png_bytes((256, 256), color=(90, 60, 30)))
    world.put("masks/room.png", png_bytes((256, 256), color=(255, 255, 255)))
    detail = {"source": f"s3://{INPUT}/req/room.png",
              "params": {"operation": "inpaint", "mask": "/masks/room.png", "prompt": "a sofa", "grow_mask": 2}}
    assert schema_check.check(detail, schema_check.load("ImageGenerationRequested")) == []
    request(routed, detail)
    [body] = bodies(world)
    calls = model_calls(world)
    world.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    world.run(body)
    [call] = calls
    assert call["modelId"] == BY_NAME["inpaint"].default_model_id
    assert set(call["body"]) == {"image", "mask", "prompt", "grow_mask", "output_format"}
    assert (call["body"]["prompt"], call["body"]["grow_mask"]) == ("a sofa", 2)
    mask = Image.open(io.BytesIO(base64.b64decode(call["body"]["mask"])))
    assert mask.mode == "L" and mask.getextrema() == (255, 255)
    record = world.record("events/req/room.png")
    assert record["status"] == "succeeded" and record["companions"]["mask"]["key"] == "masks/room.png"
    assert record["param_sources"]["mask"] == "eventbridge request"


def test_a_remove_background_event_needs_no_prompt(world, routed):
    world.put("req/cat.png", png_bytes((256, 256)))
    request(routed, {"source": {"bucket": INPUT, "key": "req/cat.png"}, "params": {"operation": "remove-background",
                                                                                  "output_format": "webp"}})
    [body] = bodies(world)
    calls = model_calls(world)
    world.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    world.run(body)
    [call] = calls
    assert call["modelId"] == BY_NAME["remove-background"].default_model_id
    assert set(call["body"]) == {"image", "output_format"} and call["body"]["output_format"] == "webp"
    record = world.record("events/req/cat.png")
    assert record["status"] == "succeeded" and record["outputs"][0]["key"] == "events/req/cat.png.webp"
