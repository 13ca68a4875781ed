"""The worker function: runtime, architecture, sizes, environment, tracing, logs, SQS event source."""
from __future__ import annotations

import pytest

from infra_synth import of_type, one

pytestmark = pytest.mark.infra


def function(synth) -> dict:
    return one(synth, "AWS::Lambda::Function", "WorkerFunction")[1]["Properties"]


def expected_env_keys(config) -> set[str]:
    settings = config.worker_settings(input_bucket="in", output_bucket="out", idempotency_table="t",
                                      job_queue_url="https://q", event_bus_name="b")
    return set(settings.to_env()) | set(config.powertools_env())


def test_defaults(default):
    props = function(default)
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == 1024
    assert props["Timeout"] == 360
    assert props["Handler"] == "img2img.handlers.sqs_worker.handler"
    assert props["TracingConfig"] == {"Mode": "Active"}


def test_context_changes_runtime_architecture_and_sizes(custom):
    props = function(custom)
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["x86_64"]
    assert props["MemorySize"] == 2048
    assert props["Timeout"] == 600


def test_asset_hash_depends_on_architecture_and_python(default, custom):
    # the bundler's arguments are not hashed: arch/python must reach the hash another way, or a stale
    # bundle for the wrong platform would be deployed
    assert function(default)["Code"]["S3Key"] != function(custom)["Code"]["S3Key"]


@pytest.mark.parametrize("variant", ["default", "custom", "secure"])
def test_environment_is_exactly_the_settings_env(variant, request):
    synth = request.getfixturevalue(variant)
    env = function(synth)["Environment"]["Variables"]
    assert set(env) == expected_env_keys(synth.config)


def test_environment_values(default):
    env = function(default)["Environment"]["Variables"]
    c = default.config
    refs = {
        "IMG2IMG_INPUT_BUCKET": {"Ref": one(default, "AWS::S3::Bucket", "StorageInputBucket")[0]},
        "IMG2IMG_OUTPUT_BUCKET": {"Ref": one(default, "AWS::S3::Bucket", "StorageOutputBucket")[0]},
        "IMG2IMG_IDEMPOTENCY_TABLE": {"Ref": one(default, "AWS::DynamoDB::Table", "IdempotencyTable")[0]},
        "IMG2IMG_JOB_QUEUE_URL": {"Ref": one(default, "AWS::SQS::Queue", "IngestJobQueue")[0]},
        "IMG2IMG_EVENT_BUS_NAME": {"Ref": one(default, "AWS::Events::EventBus", "EventsBus")[0]},
    }
    for var, ref in refs.items():
        assert env[var] == ref, var
    literal = c.worker_settings(input_bucket="x", output_bucket="x", idempotency_table="x", job_queue_url="x",
                                event_bus_name="x").to_env()
    for var, value in {**literal, **c.powertools_env()}.items():
        if var not in refs:
            assert env[var] == value, var
    assert env["IMG2IMG_MODEL_ID"] == "stability.sd3-5-large-v1:0"
    # image-to-image's models, then the thirteen Image Services' `us.` profiles (test_operations.py)
    allowed = env["IMG2IMG_ALLOWED_MODEL_IDS"]
    assert allowed.startswith("stability.sd3-5-large-v1:0,stability.stable-diffusion-xl-v1,us.")
    assert env["POWERTOOLS_SERVICE_NAME"] == "bedrock-img2img"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "BedrockImg2Img"


def test_custom_model_reaches_environment(custom):
    env = function(custom)["Environment"]["Variables"]
    assert env["IMG2IMG_MODEL_ID"] == "us.stability.sd3-5-large-v1:0"
    assert env["IMG2IMG_BATCH_CONCURRENCY"] == "2"


@pytest.mark.parametrize("variant,days", [("default", 30), ("custom", 90)])
def test_explicit_log_group_with_retention(variant, days, request):
    synth = request.getfixturevalue(variant)
    group_id, group = one(synth, "AWS::Logs::LogGroup", "WorkerLogGroup")
    assert group["Properties"]["RetentionInDays"] == days
    assert function(synth)["LoggingConfig"]["LogGroup"] == {"Ref": group_id}


@pytest.mark.parametrize("variant,batch,window,concurrency", [("default", 4, 1, 2), ("custom", 2, 5, 4)])
def test_sqs_event_source(variant, batch, window, concurrency, request):
    synth = request.getfixturevalue(variant)
    (mapping,) = of_type(synth, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    queue_id, _ = one(synth, "AWS::SQS::Queue", "IngestJobQueue")
    fn_id, _ = one(synth, "AWS::Lambda::Function", "WorkerFunction")
    assert props["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert props["FunctionName"] == {"Ref": fn_id}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == batch
    assert props["MaximumBatchingWindowInSeconds"] == window
    assert props["ScalingConfig"] == {"MaximumConcurrency": concurrency}
    assert concurrency == synth.config.event_source_max_concurrency


def test_idempotency_table(default, secure):
    _, table = one(default, "AWS::DynamoDB::Table", "IdempotencyTable")
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["AttributeDefinitions"] == [{"AttributeName": "id", "AttributeType": "S"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    key_id, _ = one(secure, "AWS::KMS::Key", "StorageKey")
    _, kms_table = one(secure, "AWS::DynamoDB::Table", "IdempotencyTable")
    assert kms_table["Properties"]["SSESpecification"] == {
        "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}, "SSEEnabled": True, "SSEType": "KMS"}
    assert kms_table["DeletionPolicy"] == "Delete"


def test_event_bus_and_optional_archive(default, secure):
    assert len(of_type(default, "AWS::Events::EventBus")) == 1
    assert not of_type(default, "AWS::Events::Archive")
    bus_id, _ = one(secure, "AWS::Events::EventBus", "EventsBus")
    (archive,) = of_type(secure, "AWS::Events::Archive").values()
    assert archive["Properties"]["RetentionDays"] == 30
    assert archive["Properties"]["SourceArn"] == {"Fn::GetAtt": [bus_id, "Arn"]}


def test_direct_invoke_function_shares_code_role_and_settings_with_the_worker(default):
    worker = function(default)
    direct = one(default, "AWS::Lambda::Function", "WorkerDirectFunction")[1]["Properties"]
    assert direct["Handler"] == "img2img.handlers.direct.handler"
    assert direct["Role"] == worker["Role"]
    assert direct["Code"] == worker["Code"]
    assert direct["Environment"] == worker["Environment"]
    assert direct["TracingConfig"] == {"Mode": "Active"}
    assert direct["LoggingConfig"] != worker["LoggingConfig"]  # its own log group
    mappings = of_type(default, "AWS::Lambda::EventSourceMapping").values()
    assert all("WorkerDirectFunction" not in str(m["Properties"]["FunctionName"]) for m in mappings)
