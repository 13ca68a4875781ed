"""Job queue, dead-letter queue and the input bucket's S3 -> SQS notifications."""
from __future__ import annotations

import pytest

from infra.config import IMAGE_SUFFIXES
from infra_synth import of_type, one, render

pytestmark = pytest.mark.infra


def test_dead_letter_queue_and_redrive(default):
    dlq_id, dlq = one(default, "AWS::SQS::Queue", "IngestDeadLetterQueue")
    _, queue = one(default, "AWS::SQS::Queue", "IngestJobQueue")
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["Properties"]["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": default.config.max_receive_count,
    }


def test_max_receive_count_follows_context(custom):
    _, queue = one(custom, "AWS::SQS::Queue", "IngestJobQueue")
    assert queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 3


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_visibility_timeout_at_least_six_function_timeouts(variant, request):
    synth = request.getfixturevalue(variant)
    _, queue = one(synth, "AWS::SQS::Queue", "IngestJobQueue")
    _, function = one(synth, "AWS::Lambda::Function", "WorkerFunction")
    visibility = queue["Properties"]["VisibilityTimeout"]
    assert visibility == synth.config.queue_visibility_timeout_seconds
    assert visibility >= 6 * function["Properties"]["Timeout"]


def test_custom_timeout_moves_visibility(custom):
    _, queue = one(custom, "AWS::SQS::Queue", "IngestJobQueue")
    assert queue["Properties"]["VisibilityTimeout"] == 6 * 600 + 5


@pytest.mark.parametrize("prefix", ["IngestJobQueue", "IngestDeadLetterQueue"])
def test_queues_encrypted_and_tls_only(default, prefix):
    queue_id, queue = one(default, "AWS::SQS::Queue", prefix)
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    policies = [p for p in of_type(default, "AWS::SQS::QueuePolicy").values()
                if {"Ref": queue_id} in p["Properties"]["Queues"]]
    assert len(policies) == 1
    denies = [s for s in policies[0]["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and s["Action"] == "sqs:*"
               for s in denies)


def test_only_the_input_bucket_may_send_to_the_job_queue(default):
    queue_id, _ = one(default, "AWS::SQS::Queue", "IngestJobQueue")
    input_id, _ = one(default, "AWS::S3::Bucket", "StorageInputBucket")
    policy = next(p for p in of_type(default, "AWS::SQS::QueuePolicy").values()
                  if {"Ref": queue_id} in p["Properties"]["Queues"])
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"
              and s["Principal"] != {"Service": "events.amazonaws.com"}]  # EventBridge rules: test_event_rules.py
    assert len(allows) == 1
    assert allows[0]["Principal"] == {"Service": "s3.amazonaws.com"}
    assert "sqs:SendMessage" in as_actions(allows[0])
    assert allows[0]["Condition"]["ArnLike"]["aws:SourceArn"] == {"Fn::GetAtt": [input_id, "Arn"]}


def as_actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_notifications_for_every_suffix_both_cases_and_sidecars(default):
    queue_id, _ = one(default, "AWS::SQS::Queue", "IngestJobQueue")
    input_id, _ = one(default, "AWS::S3::Bucket", "StorageInputBucket")
    (notifications,) = of_type(default, "Custom::S3BucketNotifications").values()
    props = notifications["Properties"]
    assert props["BucketName"] == {"Ref": input_id}
    configs = props["NotificationConfiguration"]["QueueConfigurations"]
    suffixes = []
    for c in configs:
        assert c["Events"] == ["s3:ObjectCreated:*"]
        assert c["QueueArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        rules = c["Filter"]["Key"]["FilterRules"]
        assert [r["Name"] for r in rules] == ["suffix"]
        suffixes.append(rules[0]["Value"])
    expected = {*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES), ".json"}
    assert len(suffixes) == len(set(suffixes))
    assert set(suffixes) == expected
    assert {".jpg", ".JPG", ".png", ".PNG", ".heic", ".json"} <= set(suffixes)
    # nothing is notified on the output bucket (the worker would trigger itself)
    assert "LambdaFunctionConfigurations" not in props["NotificationConfiguration"]
    assert render(props["BucketName"]) == f"${{{input_id}}}"
