"""The worker role's exact statements: Bedrock only on configured models, everything else on its own resources."""
from __future__ import annotations

import pytest

from img2img.operations import default_models
from infra.config import DEFAULT_TRANSLATION_MODEL_ID as TRANSLATION
from infra.regions import INFERENCE_PROFILE_REGIONS
from infra.worker import bedrock_model_arns
from infra_synth import actions, one, resources, service_arns, with_action, worker_statements

pytestmark = pytest.mark.infra

P, A = "${AWS::Partition}", "${AWS::AccountId}"


def test_bedrock_only_invoke_on_configured_foundation_models(default):
    (statement,) = with_action(worker_statements(default), "bedrock:")
    assert actions(statement) == {"bedrock:InvokeModel"}
    assert resources(statement) == {
        # bedrockRegion's default (infra/regions.py): the region that serves SD3.5 Large
        f"arn:{P}:bedrock:us-west-2::foundation-model/stability.sd3-5-large-v1:0",
        f"arn:{P}:bedrock:us-west-2::foundation-model/stability.stable-diffusion-xl-v1",
    } | service_arns(default_models()) | service_arns([TRANSLATION])  # the Image Services, the translator
    assert not any("*" in r for r in resources(statement))


def test_inference_profile_expands_to_profile_and_routed_regions(custom):
    # -c modelId=us.stability.sd3-5-large-v1:0 -c bedrockRegion=us-west-2
    (statement,) = with_action(worker_statements(custom), "bedrock:")
    assert actions(statement) == {"bedrock:InvokeModel"}
    assert resources(statement) == {
        f"arn:{P}:bedrock:us-west-2:{A}:inference-profile/us.stability.sd3-5-large-v1:0",
        f"arn:{P}:bedrock:us-east-1::foundation-model/stability.sd3-5-large-v1:0",
        f"arn:{P}:bedrock:us-east-2::foundation-model/stability.sd3-5-large-v1:0",
        f"arn:{P}:bedrock:us-west-2::foundation-model/stability.sd3-5-large-v1:0",
        f"arn:{P}:bedrock:us-west-2::foundation-model/stability.stable-diffusion-xl-v1",
    } | service_arns(default_models(), region="us-west-2") | service_arns([TRANSLATION], region="us-west-2")


def test_model_arn_table():
    assert bedrock_model_arns(("us.x.y-v1:0",), region="us-east-2", account="123456789012", partition="aws") == [
        "arn:aws:bedrock:us-east-2:123456789012:inference-profile/us.x.y-v1:0",
        *(f"arn:aws:bedrock:{r}::foundation-model/x.y-v1:0" for r in ("us-east-1", "us-east-2", "us-west-2"))]
    arns = bedrock_model_arns(
        ("eu.stability.sd3-5-large-v1:0", "apac.x.y-v1:0", "global.x.y-v1:0",
         "arn:aws:bedrock:us-west-2:123456789012:provisioned-model/abc", "stability.sd3-5-large-v1:0"),
        region="eu-west-1", account="123456789012", partition="aws")
    assert arns == [
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.stability.sd3-5-large-v1:0",
        *(f"arn:aws:bedrock:{r}::foundation-model/stability.sd3-5-large-v1:0"
          for r in ("eu-central-1", "eu-west-1", "eu-west-3", "eu-north-1")),
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/apac.x.y-v1:0",
        *(f"arn:aws:bedrock:{r}::foundation-model/x.y-v1:0"
          for r in ("ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2")),
        "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/global.x.y-v1:0",
        "arn:aws:bedrock:::foundation-model/x.y-v1:0",
        "arn:aws:bedrock:us-west-2:123456789012:provisioned-model/abc",
        # the plain id's eu-west-1 ARN is already listed for the eu. profile: no duplicates
    ]
    assert set(INFERENCE_PROFILE_REGIONS) == {"us", "eu", "apac", "global"}


def test_s3_read_input_write_output_only(default):
    input_id, _ = one(default, "AWS::S3::Bucket", "StorageInputBucket")
    output_id, _ = one(default, "AWS::S3::Bucket", "StorageOutputBucket")
    s3 = {frozenset(actions(s)): resources(s) for s in with_action(worker_statements(default), "s3:")}
    assert s3 == {
        frozenset({"s3:GetObject", "s3:GetObjectVersion"}): {f"${{{input_id}.Arn}}/*"},
        frozenset({"s3:ListBucket"}): {f"${{{input_id}.Arn}}"},
        frozenset({"s3:PutObject", "s3:GetObject"}): {f"${{{output_id}.Arn}}/*"},
        frozenset({"s3:DeleteObject"}): {f"${{{output_id}.Arn}}/_staging/*"},  # its own checkpoints only
    }


def test_dynamodb_events_and_sqs_on_own_resources(default):
    statements = worker_statements(default)
    table_id, _ = one(default, "AWS::DynamoDB::Table", "IdempotencyTable")
    bus_id, _ = one(default, "AWS::Events::EventBus", "EventsBus")
    queue_id, _ = one(default, "AWS::SQS::Queue", "IngestJobQueue")
    ddb = with_action(statements, "dynamodb:")
    assert {a for s in ddb for a in actions(s)} == {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
        "dynamodb:BatchGetItem"}  # a bulk job's report reads its rows' outcome items, 100 a call
    assert all(resources(s) == {f"${{{table_id}.Arn}}"} for s in ddb)
    (ev,) = with_action(statements, "events:")
    assert actions(ev) == {"events:PutEvents"} and resources(ev) == {f"${{{bus_id}.Arn}}"}
    sqs = with_action(statements, "sqs:")
    assert {a for s in sqs for a in actions(s)} == {
        "sqs:SendMessage",  # deferred "wait for the sidecar" jobs
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl"}
    assert all(resources(s) == {f"${{{queue_id}.Arn}}"} for s in sqs)


def test_wildcard_resource_only_for_xray_and_logs_scoped(default):
    statements = worker_statements(default)
    star = [s for s in statements if "*" in resources(s)]
    assert len(star) == 1 and actions(star[0]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    groups = {one(default, "AWS::Logs::LogGroup", prefix)[0] for prefix in ("WorkerLogGroup", "WorkerDirectLogGroup")}
    (logs,) = with_action(statements, "logs:")
    assert actions(logs) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert resources(logs) == {f"${{{group_id}.Arn}}" for group_id in groups}  # its two log groups only
    known = ("bedrock:", "s3:", "dynamodb:", "events:", "sqs:", "xray:", "logs:")
    assert all(a.startswith(known) for s in statements for a in actions(s))
    assert not with_action(statements, "kms:")


def test_kms_grant_only_when_kms_is_on(secure):
    key_id, _ = one(secure, "AWS::KMS::Key", "StorageKey")
    (kms,) = with_action(worker_statements(secure), "kms:")
    assert actions(kms) == {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"}
    assert resources(kms) == {f"${{{key_id}.Arn}}"}
