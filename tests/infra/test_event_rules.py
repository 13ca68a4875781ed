"""EventBridge into the job queue: ImageGenerationRequested always; S3 Object Created in eventbridge mode."""
from __future__ import annotations

import pytest

from infra_synth import of_type, one

pytestmark = pytest.mark.infra


def queue_allows(synth) -> list[dict]:
    queue_id, _ = one(synth, "AWS::SQS::Queue", "IngestJobQueue")
    policy = next(p for p in of_type(synth, "AWS::SQS::QueuePolicy").values()
                  if {"Ref": queue_id} in p["Properties"]["Queues"])
    return [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]


def rules(synth) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in of_type(synth, "AWS::Events::Rule").items()}


@pytest.mark.parametrize("variant", ["default", "api_key_eventbridge"])
def test_requested_events_on_the_bus_go_to_the_job_queue(variant, request):
    synth = request.getfixturevalue(variant)
    queue_id, _ = one(synth, "AWS::SQS::Queue", "IngestJobQueue")
    bus_id, _ = one(synth, "AWS::Events::EventBus", "EventsBus")
    rule_id, rule = next((k, v) for k, v in rules(synth).items() if k.startswith("EventRulesRequested"))
    assert rule["EventPattern"] == {"detail-type": ["ImageGenerationRequested"]}
    assert rule["EventBusName"] == {"Ref": bus_id}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    allow = next(s for s in queue_allows(synth) if s["Principal"] == {"Service": "events.amazonaws.com"}
                 and s["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": [rule_id, "Arn"]})
    assert "sqs:SendMessage" in allow["Action"]


def test_default_ingest_is_s3_notifications_without_an_object_created_rule(default):
    assert not [k for k in rules(default) if k.startswith("EventRulesObjectCreated")]
    assert of_type(default, "Custom::S3BucketNotifications")
    (notifications,) = of_type(default, "Custom::S3BucketNotifications").values()
    assert notifications["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert any(s["Principal"] == {"Service": "s3.amazonaws.com"} for s in queue_allows(default))


def test_eventbridge_ingest_mode(api_key_eventbridge):
    synth = api_key_eventbridge
    input_id, _ = one(synth, "AWS::S3::Bucket", "StorageInputBucket")
    (notifications,) = of_type(synth, "Custom::S3BucketNotifications").values()
    config = notifications["Properties"]["NotificationConfiguration"]
    assert config.get("EventBridgeConfiguration") == {} and "QueueConfigurations" not in config
    _, rule = next((k, v) for k, v in rules(synth).items() if k.startswith("EventRulesObjectCreated"))
    assert "EventBusName" not in rule  # S3 delivers to the default bus
    assert rule["EventPattern"] == {
        "source": ["aws.s3"], "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [{"Ref": input_id}]},
                   "object": {"key": [{"anything-but": {"prefix": "api/"}}]}}}
    principals = [s["Principal"] for s in queue_allows(synth)]
    assert {"Service": "s3.amazonaws.com"} not in principals
    assert principals.count({"Service": "events.amazonaws.com"}) == 2
