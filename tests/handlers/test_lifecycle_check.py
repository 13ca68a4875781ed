"""The daily lifecycle check end to end in its handler: a Legacy model makes a metric the alarm counts and
a ModelLifecycleProblem event on the bus; a job that meets a retired model names the model to move to."""
from __future__ import annotations

import json

import boto3
import pytest
from aws_world import SD35, SDXL, png_bytes, s3_body
from botocore.stub import Stubber
from moto import mock_aws

from img2img.lifecycle import ALARMED_KINDS, EVENT_DETAIL_TYPE, METRICS, Plan
from img2img_local.engine.control import LEGACY_MESSAGE
from img2img_local.engine.faults import EOL_MESSAGE

BUS = "img2img-test-bus"
REGION = "us-west-2"
PLAN = Plan(region=REGION, models={SD35: ("image-to-image",)}, concurrency=8)


def legacy_details():
    return {"modelDetails": {"modelArn": f"arn:aws:bedrock:{REGION}::foundation-model/{SD35}", "modelId": SD35,
                             "modelName": "Stable Diffusion 3.5 Large",
                             "modelLifecycle": {"status": "LEGACY", "legacyTime": "2026-09-01T00:00:00Z",
                                                "endOfLifeTime": "2027-03-01T00:00:00Z"}}}


@pytest.fixture
def aws(settings_env, monkeypatch):
    from img2img.aws import clients

    monkeypatch.setenv("IMG2IMG_EVENT_BUS_NAME", BUS)
    for name, value in PLAN.to_env().items():
        monkeypatch.setenv(name, value)
    clients.client.cache_clear()
    clients._session.cache_clear()
    with mock_aws():
        events, sqs = boto3.client("events", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
        events.create_event_bus(Name=BUS)
        queue = sqs.create_queue(QueueName="seen")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"detail-type": [EVENT_DETAIL_TYPE]}))
        events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
        yield sqs, queue
    clients.client.cache_clear()
    clients._session.cache_clear()


QUOTA = {"QuotaCode": "L-5D3F", "QuotaName": "On-demand model inference requests per minute for Stable Diffusion "
         "3.5 Large", "Value": 100.0, "ServiceCode": "bedrock"}


def stubbed_reader(monkeypatch, details, probe_error):
    """The reader with Bedrock and Service Quotas stubbed: moto has no Bedrock control plane, and its Service
    Quotas knows only VPC's defaults (no ListServiceQuotas)."""
    from img2img.aws import lifecycle

    bedrock = boto3.client("bedrock", region_name=REGION)
    runtime = boto3.client("bedrock-runtime", region_name=REGION)
    quotas = boto3.client("service-quotas", region_name=REGION)
    stubs = Stubber(bedrock), Stubber(runtime), Stubber(quotas)
    stubs[0].add_response("get_foundation_model", details, {"modelIdentifier": SD35})
    stubs[1].add_client_error("invoke_model", service_error_code=probe_error[0], service_message=probe_error[1],
                              http_status_code=probe_error[2])
    stubs[2].add_response("list_service_quotas", {"Quotas": [QUOTA]}, {"ServiceCode": "bedrock"})
    for stub in stubs:
        stub.activate()
    reader = lifecycle.LifecycleReader(REGION, bedrock=bedrock, runtime=runtime, quotas=quotas)
    monkeypatch.setattr(lifecycle, "LifecycleReader", lambda region: reader)
    return stubs


def emitted_metrics(text: str) -> dict[str, float]:
    blobs = [json.loads(line) for line in text.splitlines() if line.startswith("{") and "_aws" in line]
    names = [m["Name"] for b in blobs for d in b["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
    value = {name: next(b[name] for b in blobs if name in b) for name in names}
    return {name: sum(v) if isinstance(v, list) else v for name, v in value.items()}


def test_a_legacy_model_publishes_the_alarmed_metric_and_an_event(aws, monkeypatch, capsys):
    from aws_world import Context

    from img2img.handlers import lifecycle_check

    sqs, queue = aws
    stubs = stubbed_reader(monkeypatch, legacy_details(), ("ValidationException", "Malformed input request", 400))
    result = lifecycle_check.handler({}, Context())
    for stub in stubs:
        stub.assert_no_pending_responses()

    assert [(p["model_id"], p["kind"], p["severity"]) for p in result["problems"]] == [(SD35, "legacy", "error")]
    published = emitted_metrics(capsys.readouterr().out)
    assert published[METRICS["legacy"]] == 1
    assert all(published[METRICS[k]] == 0 for k in ALARMED_KINDS if k != "legacy")  # the alarm recovers on 0s
    [message] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    assert event["detail-type"] == EVENT_DETAIL_TYPE and event["source"] == "bedrock-img2img"
    assert event["detail"]["model_id"] == SD35 and event["detail"]["region"] == REGION
    assert "no successor is known" in event["detail"]["advice"]


def test_the_legacy_inactivity_refusal_makes_the_model_retired(aws, monkeypatch):
    from img2img.handlers import lifecycle_check

    stubbed_reader(monkeypatch, legacy_details(), ("ResourceNotFoundException", LEGACY_MESSAGE, 404))
    [problem] = lifecycle_check.run()["problems"]
    assert problem["kind"] == "retired" and "marked by provider as Legacy" in problem["detail"]


@pytest.mark.parametrize("message", [EOL_MESSAGE, LEGACY_MESSAGE])
def test_a_job_on_a_retired_model_fails_with_model_retired_naming_the_replacement(world, message):
    world.put("old/cat.png", png_bytes((256, 256)), {"prompt": "a cat", "model-id": SDXL})
    world.stub.add_client_error("invoke_model", service_error_code="ResourceNotFoundException",
                                service_message=message, http_status_code=404)
    assert world.run(s3_body("old/cat.png")) == {"batchItemFailures": []}  # permanent: never retried
    error = world.record("old/cat.png")["error"]
    assert error["code"] == "model_retired"
    assert f"move to {SD35}" in error["message"] and message.split(".")[0] in error["message"]
