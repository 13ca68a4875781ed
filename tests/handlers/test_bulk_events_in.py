"""`SubmitBulkJob` on the pipeline's bus: the real EventBridge envelope (moto delivers it whole, as the
stack's rule does to the function) submitted through the CLI's and the API's path, its outcome an event."""
from __future__ import annotations

import json

import boto3
import pytest
import schema_check
from aws_world import INPUT, OUTPUT, Context
from botocore.stub import ANY, Stubber

from img2img.core import bulk as core_bulk

BUS = "img2img-bus"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:img2img-bulk-enqueue"
ROLE = "arn:aws:iam::123456789012:role/img2img-bulk-batch"


@pytest.fixture
def bus(world, monkeypatch):
    """The pipeline's bus with the stack's SubmitBulkJob rule (captured in a queue: the envelope as delivered)
    and a rule that collects our outcome events; CreateJob stubbed at its real request shape."""
    from img2img import bulk_submit, settings
    from img2img.handlers import bulk_events

    monkeypatch.setenv("IMG2IMG_EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("IMG2IMG_BULK_FUNCTION_ARN", FUNCTION)
    monkeypatch.setenv("IMG2IMG_BULK_ROLE_ARN", ROLE)
    settings.get_settings.cache_clear()
    events = boto3.client("events", region_name="us-east-1")
    events.create_event_bus(Name=BUS)
    queues = {}
    for name, pattern in (("submit", {"detail-type": [core_bulk.SUBMIT_EVENT]}),
                          ("outcomes", {"source": ["bedrock-img2img"],
                                        "detail-type": [core_bulk.SUBMITTED_EVENT, core_bulk.REFUSED_EVENT]})):
        url = world.sqs.create_queue(QueueName=f"bulk-{name}")["QueueUrl"]
        arn = world.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventBusName=BUS, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=name, EventBusName=BUS, Targets=[{"Id": name, "Arn": arn}])
        queues[name] = url
    s3control = boto3.client("s3control", region_name="us-east-1")
    stub = Stubber(s3control)
    for cache in (bulk_events.target, bulk_events.publisher):
        cache.cache_clear()
    monkeypatch.setattr(bulk_events, "target",
                        lambda: bulk_submit.aws_target(settings.get_settings(), s3control=s3control))

    def received(name):
        messages = world.sqs.receive_message(QueueUrl=queues[name], MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def expect_job(job_id="4b48473d-0000-4000-8000-000000000002"):
        stub.add_response("create_job", {"JobId": job_id}, {
            "AccountId": "123456789012", "ConfirmationRequired": False, "Priority": ANY, "RoleArn": ROLE,
            "ClientRequestToken": ANY, "Description": ANY, "Operation": ANY, "Manifest": ANY, "Report": ANY})

    world.events, world.received, world.expect_job = events, received, expect_job
    world.s3control_stub = stub
    with stub:
        yield world
        stub.assert_no_pending_responses()
    settings.get_settings.cache_clear()
    bulk_events.publisher.cache_clear()


def put(world, detail: dict) -> dict:
    """Put a SubmitBulkJob as a producer would, and the envelope EventBridge delivers for it."""
    world.events.put_events(Entries=[{"EventBusName": BUS, "Source": "my.catalogue",
                                      "DetailType": core_bulk.SUBMIT_EVENT, "Detail": json.dumps(detail)}])
    [envelope] = world.received("submit")
    return envelope


def run(envelope: dict) -> dict:
    from img2img.handlers import bulk_events

    return bulk_events.handler(envelope, Context())


def manifest(world, rows=2) -> str:
    text = core_bulk.encode_manifest((INPUT, f"catalogue/{n}.png", None) for n in range(rows))
    world.s3.put_object(Bucket=INPUT, Key="manifests/m.csv", Body=text.encode())
    return f"s3://{INPUT}/manifests/m.csv"


def test_a_submit_event_becomes_a_bulk_job_and_a_submitted_event(bus):
    detail = {"manifest": manifest(bus), "operation": "remove-background", "output_prefix": "shop/",
              "request_id": "season-7"}
    assert schema_check.check(detail, schema_check.load(core_bulk.SUBMIT_EVENT)) == []
    envelope = put(bus, detail)
    assert envelope["detail-type"] == core_bulk.SUBMIT_EVENT and envelope["source"] == "my.catalogue"
    bus.expect_job()
    run(envelope)
    [outcome] = bus.received("outcomes")
    assert outcome["detail-type"] == core_bulk.SUBMITTED_EVENT and outcome["source"] == "bedrock-img2img"
    got = outcome["detail"]
    assert schema_check.check(got, schema_check.load(core_bulk.SUBMITTED_EVENT)) == []
    assert (got["request_id"], got["rows"], got["operation"]) == ("season-7", 2, "remove-background")
    assert got["output"] == {"bucket": OUTPUT, "prefix": "events/shop/"}  # the events/ namespace
    assert got["bulk_id"] == core_bulk.event_bulk_id(envelope["id"])
    assert bus.s3.get_object(Bucket=OUTPUT, Key=f"_bulk/{got['bulk_id']}/manifest.csv")

    run(envelope)  # redelivered: the same bulk job, no second CreateJob (the Stubber would fail)
    [again] = bus.received("outcomes")
    assert again["detail"]["bulk_id"] == got["bulk_id"] and again["detail-type"] == core_bulk.SUBMITTED_EVENT


@pytest.mark.parametrize("change, code", [
    ({"manifest": "s3://someone-elses-bucket/m.csv"}, "access_denied"),
    ({"params": {"prompt": "a watercolor"}, "operation": None, "rows": 1300}, "cost_not_acknowledged"),
    ({"params": {"operation": "remove-background", "strength": 9}, "operation": None}, "invalid_parameters"),
    ({"output_prefix": "../x/"}, "invalid_parameters"),
    ({"colour": "red"}, "invalid_parameters"),
])
def test_a_refused_submit_is_a_refused_event_with_its_error_code(bus, change, code):
    rows = change.pop("rows", 2)
    detail = {"manifest": manifest(bus, rows), "operation": "remove-background", "output_prefix": "shop/",
              "request_id": "r-1", **change}
    run(put(bus, {k: v for k, v in detail.items() if v is not None}))
    [outcome] = bus.received("outcomes")
    assert outcome["detail-type"] == core_bulk.REFUSED_EVENT
    got = outcome["detail"]
    assert schema_check.check(got, schema_check.load(core_bulk.REFUSED_EVENT)) == []
    assert got["error_code"] == code and got["request_id"] == "r-1" and got["message"]
    assert bus.s3.list_objects_v2(Bucket=OUTPUT, Prefix="_bulk/").get("KeyCount", 0) == 0


def test_acknowledge_cost_lifts_the_ceiling(bus):
    detail = {"manifest": manifest(bus, 1300), "params": {"prompt": "a watercolor"}, "output_prefix": "w/",
              "acknowledgeCost": True}
    bus.expect_job()
    run(put(bus, detail))
    [outcome] = bus.received("outcomes")
    assert outcome["detail-type"] == core_bulk.SUBMITTED_EVENT and outcome["detail"]["estimated_cost_usd"] == 104.0


def test_a_fault_before_batch_operations_has_the_job_is_finished_by_the_events_retry(bus):
    """CreateJob fails after the progress item is written: the invocation fails (EventBridge retries it),
    and the retry creates the job, once, rather than answering `submitted` for a job that never started."""
    from img2img.core.errors import JobError

    envelope = put(bus, {"manifest": manifest(bus), "operation": "remove-background", "output_prefix": "shop/"})
    bus.s3control_stub.add_client_error("create_job", "InternalError", http_status_code=500)
    with pytest.raises(JobError) as caught:
        run(envelope)
    assert caught.value.retryable and bus.received("outcomes") == []
    bus.expect_job("5c59584e-0000-4000-8000-000000000003")
    run(envelope)
    [outcome] = bus.received("outcomes")
    assert outcome["detail-type"] == core_bulk.SUBMITTED_EVENT
    assert outcome["detail"]["batch_job_id"] == "5c59584e-0000-4000-8000-000000000003"
    run(envelope)  # and once started, a further redelivery creates nothing (the Stubber would fail)
    [again] = bus.received("outcomes")
    assert again["detail"]["batch_job_id"] == "5c59584e-0000-4000-8000-000000000003"
