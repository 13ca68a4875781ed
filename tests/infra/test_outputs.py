"""Stack outputs: what a user needs after `cdk deploy`."""
from __future__ import annotations

import pytest

from infra_synth import one, render

pytestmark = pytest.mark.infra

EXPECTED = {"InputBucketName", "OutputBucketName", "AccessLogBucketName", "JobQueueUrl", "DeadLetterQueueUrl",
            "IdempotencyTableName", "EventBusName", "WorkerFunctionName", "DashboardName", "DashboardUrl",
            "ApiUrl", "ApiFunctionName", "DirectFunctionArn", "C2paSigningKeyArn",
            "LifecycleCheckFunctionName", "BulkFunctionArn", "BulkRoleArn"}


def outputs(synth) -> dict[str, object]:
    return {k: render(v["Value"]) for k, v in synth.template.to_json()["Outputs"].items()}


def test_output_names(default, secure):
    assert set(outputs(default)) == EXPECTED
    assert set(outputs(secure)) == EXPECTED | {"AlarmTopicArn"}


def test_outputs_point_at_the_right_resources(default):
    out = outputs(default)
    ref = lambda cfn_type, prefix: f"${{{one(default, cfn_type, prefix)[0]}}}"  # noqa: E731
    assert out["InputBucketName"] == ref("AWS::S3::Bucket", "StorageInputBucket")
    assert out["OutputBucketName"] == ref("AWS::S3::Bucket", "StorageOutputBucket")
    assert out["AccessLogBucketName"] == ref("AWS::S3::Bucket", "StorageAccessLogs")
    assert out["JobQueueUrl"] == ref("AWS::SQS::Queue", "IngestJobQueue")
    assert out["DeadLetterQueueUrl"] == ref("AWS::SQS::Queue", "IngestDeadLetterQueue")
    assert out["IdempotencyTableName"] == ref("AWS::DynamoDB::Table", "IdempotencyTable")
    assert out["EventBusName"] == ref("AWS::Events::EventBus", "EventsBus")
    assert out["WorkerFunctionName"] == ref("AWS::Lambda::Function", "WorkerFunction")
    dashboard = ref("AWS::CloudWatch::Dashboard", "MonitoringDashboard")
    assert out["DashboardName"] == dashboard
    assert out["DashboardUrl"] == ("https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?"
                                   "region=${AWS::Region}#dashboards:name=" + dashboard)
