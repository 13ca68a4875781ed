"""Mounting the pipeline on buckets that already exist (`inputBucketName`, `outputBucketName`)."""
from __future__ import annotations

import json

import pytest

from infra.config import ConfigError, PipelineConfig
from infra_synth import build, of_type, one, render, synth, with_action, worker_statements

pytestmark = pytest.mark.infra

INPUT, OUTPUT = "photos-of-acme", "acme-generated"
BOTH = {"inputBucketName": INPUT, "outputBucketName": OUTPUT}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    return synth(BOTH, tmp_path_factory.mktemp("existing"))


@pytest.fixture(scope="module")
def eventbridge(tmp_path_factory):
    return synth({"inputBucketName": INPUT, "ingestMode": "eventbridge"}, tmp_path_factory.mktemp("existing-eb"))


def arn(name: str, suffix: str = "") -> str:
    return f"arn:${{AWS::Partition}}:s3:::{name}{suffix}"


def test_no_bucket_is_created_and_no_bucket_policy_is_attempted(both):
    assert of_type(both, "AWS::S3::Bucket") == {}  # the access-log bucket goes too: nothing logs into it
    assert of_type(both, "AWS::S3::BucketPolicy") == {}
    outputs = both.template.to_json()["Outputs"]
    assert outputs["InputBucketName"]["Value"] == INPUT and outputs["OutputBucketName"]["Value"] == OUTPUT
    assert "AccessLogBucketName" not in outputs


def test_iam_is_scoped_to_the_existing_buckets(both):
    s3 = {frozenset(s["Action"] if isinstance(s["Action"], list) else [s["Action"]]): render(s["Resource"])
          for s in with_action(worker_statements(both), "s3:")}
    assert s3 == {
        frozenset({"s3:GetObject", "s3:GetObjectVersion"}): arn(INPUT, "/*"),
        frozenset({"s3:ListBucket"}): arn(INPUT),
        frozenset({"s3:PutObject", "s3:GetObject"}): arn(OUTPUT, "/*"),
        frozenset({"s3:DeleteObject"}): arn(OUTPUT, "/_staging/*"),
    }
    env = next(r for k, r in both.resources.items() if k.startswith("WorkerFunction")
               and r["Type"] == "AWS::Lambda::Function")["Properties"]["Environment"]["Variables"]
    assert (env["IMG2IMG_INPUT_BUCKET"], env["IMG2IMG_OUTPUT_BUCKET"]) == (INPUT, OUTPUT)


def test_s3_mode_subscribes_the_existing_bucket_to_the_queue(both):
    (_, notifications), = of_type(both, "Custom::S3BucketNotifications").items()
    props = notifications["Properties"]
    assert props["BucketName"] == INPUT
    assert props["Managed"] is False  # the handler keeps the bucket's other notifications
    queues = props["NotificationConfiguration"]["QueueConfigurations"]
    assert queues and {json.dumps(q["QueueArn"]) for q in queues} == {
        json.dumps({"Fn::GetAtt": [one(both, "AWS::SQS::Queue", "IngestJobQueue")[0], "Arn"]})}
    _, policy = one(both, "AWS::SQS::QueuePolicy", "IngestJobQueuePolicy")
    conditions = [s.get("Condition") for s in policy["Properties"]["PolicyDocument"]["Statement"]
                  if s.get("Principal") == {"Service": "s3.amazonaws.com"}]
    assert [render(c["ArnLike"]["aws:SourceArn"]) for c in conditions] == [arn(INPUT)]


def test_eventbridge_mode_enables_eventbridge_on_the_existing_bucket(eventbridge):
    (_, notifications), = of_type(eventbridge, "Custom::S3BucketNotifications").items()
    props = notifications["Properties"]
    assert props["BucketName"] == INPUT and props["Managed"] is False
    assert props["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}
    rule = next(r for k, r in of_type(eventbridge, "AWS::Events::Rule").items() if k.startswith("EventRulesObject"))
    assert rule["Properties"]["EventPattern"]["detail"]["bucket"]["name"] == [INPUT]
    # The output bucket is still the stack's own, with its access logs.
    assert one(eventbridge, "AWS::S3::Bucket", "StorageOutputBucket")
    assert one(eventbridge, "AWS::S3::Bucket", "StorageAccessLogs")


@pytest.mark.parametrize("context,message", [
    ({"inputBucketName": "Not_A_Bucket"}, "context inputBucketName='Not_A_Bucket' is invalid"),
    ({"inputBucketName": "same-one", "outputBucketName": "same-one"},
     "outputs written to the input bucket would start new jobs"),
])
def test_bad_names_stop_synth(context, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_context(context)


@pytest.mark.parametrize("overrides", [BOTH, {"inputBucketName": INPUT, "ingestMode": "eventbridge"},
                                       {"outputBucketName": OUTPUT, "apiAuth": "api-key"}],
                         ids=["both", "input-eventbridge", "output-only"])
def test_nag_clean_with_existing_buckets(overrides, tmp_path):
    app, _, _ = build(overrides, outdir=tmp_path, with_nag=True)
    app.synth()  # raises ValidationFailed on any unacknowledged finding
