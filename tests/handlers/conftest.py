"""Handler test fixtures: fresh moto state, settings and pipeline per test (helpers in aws_world.py)."""
from __future__ import annotations

import os

import boto3
import pytest
from aws_world import INPUT, OUTPUT, SD35, SDXL, TABLE, World
from botocore.stub import Stubber
from moto import mock_aws


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
    """The world behind the HTTP API handler, with the worker simulated while the sync route waits.

    POST /v1/generations queues its job and waits for the record: here the wait runs the real SQS
    worker on what is in moto's queue (`api.worker_keeps_up = False`: the worker is too slow for the
    budget, the message stays queued). `api.model_calls` counts Bedrock calls, wherever they come from."""
    from img2img.handlers import api as module
    from img2img.handlers.api import service

    def reset():
        for cache in (service.edge, service._answers, module.resolver):
            cache.cache_clear()

    reset()
    world.worker_keeps_up = True
    world.model_calls = []
    world.pipeline.model._runtime.meta.events.register(
        "before-parameter-build.bedrock-runtime.InvokeModel", lambda **kw: world.model_calls.append(kw.get("params")))

    def worker_then_read(where, deadline):
        if world.worker_keeps_up:
            messages = world.sqs.receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            for m in messages:
                failed = world.run(m["Body"])["batchItemFailures"]
                if failed:  # SQS redelivers it later
                    world.sqs.change_message_visibility(QueueUrl=world.queue_url, ReceiptHandle=m["ReceiptHandle"],
                                                        VisibilityTimeout=0)
                else:
                    world.sqs.delete_message(QueueUrl=world.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return service.edge().record(where["bucket"], where["key"])

    monkeypatch.setattr(service, "await_record", worker_then_read)
    yield world
    reset()
