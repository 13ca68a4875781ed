"""Handler test fixtures: fresh moto state, settings and pipeline per test (helpers in aws_world.py)."""
from __future__ import annotations

import os

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from aws_world import INPUT, OUTPUT, SD35, SDXL, TABLE, World


@pytest.fixture
def settings_env(monkeypatch):
    env = {
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "IMG2IMG_INPUT_BUCKET": INPUT, "IMG2IMG_OUTPUT_BUCKET": OUTPUT, "IMG2IMG_IDEMPOTENCY_TABLE": TABLE,
        "IMG2IMG_MODEL_ID": SD35, "IMG2IMG_ALLOWED_MODEL_IDS": f"{SD35},{SDXL}",
        "IMG2IMG_SIDECAR_GRACE_SECONDS": "60", "IMG2IMG_MAX_RECEIVE_COUNT": "3",
        "IMG2IMG_BATCH_CONCURRENCY": "1",
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "img2img-test",
        "POWERTOOLS_METRICS_NAMESPACE": "Img2ImgTest",
    }
    for name in [n for n in os.environ if n.startswith(("IMG2IMG_", "AWS_ENDPOINT_URL"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def world(settings_env, monkeypatch):
    from img2img import assembly, settings
    from img2img.aws import clients

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (INPUT, OUTPUT):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=INPUT, VersioningConfiguration={"Status": "Enabled"})
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="img2img-jobs")["QueueUrl"]
        monkeypatch.setenv("IMG2IMG_JOB_QUEUE_URL", queue_url)
        for cache in (settings.get_settings, assembly.get_pipeline, clients.client, clients._session):
            cache.cache_clear()
        pipeline = assembly.get_pipeline()
        runtime = boto3.client("bedrock-runtime", region_name="us-east-1")
        pipeline.model._runtime = runtime
        with Stubber(runtime) as stub:
            yield World(s3, sqs, queue_url, stub, pipeline)
        for cache in (settings.get_settings, assembly.get_pipeline, clients.client, clients._session):
            cache.cache_clear()


@pytest.fixture
def api(world, monkeypatch):
    """The world, with the HTTP API handler's cached edge reset and its Bedrock calls on the stub."""
    from img2img.handlers import api as module

    for cache in (module.edge, module._answers, module._invokers):
        cache.cache_clear()
    # The sync route's Bedrock invoker (one attempt, budget-bounded timeout) shares the stubbed client.
    monkeypatch.setattr(module, "model_invoker", lambda seconds: world.pipeline.model)
    yield world
    for cache in (module.edge, module._answers, module._invokers):
        cache.cache_clear()
