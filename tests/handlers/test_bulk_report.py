"""A bulk job's end: when its last row has its record, one report (CSV: key, status, error code, output
key) and one BulkJobCompleted event, however often messages come back and whichever write fails; rows
of two source buckets with the same key give two records."""
from __future__ import annotations

import csv
import gzip
import io
import json

import boto3
import pytest
import schema_check
from aws_world import INPUT, OUTPUT, TABLE, Context, png_bytes, sd35_ok

from img2img.aws.bulk import DynamoBulkProgress
from img2img.core import bulk
from img2img.core.errors import transient

ARGS = bulk.BulkArguments("bulk-7", "bulk/shop/", {"prompt": "a watercolor", "seed": 3})
CATALOGUE = "img2img-test-catalogue"  # a second source bucket (IMG2IMG_BULK_SOURCE_BUCKETS)


@pytest.fixture
def world2(world, monkeypatch):
    """The world with a second readable source bucket and the pipeline's bus copied to a queue."""
    from img2img import settings
    from img2img.aws.events import EventBridgePublisher

    world.s3.create_bucket(Bucket=CATALOGUE)
    monkeypatch.setenv("IMG2IMG_BULK_SOURCE_BUCKETS", CATALOGUE)
    settings.get_settings.cache_clear()
    world.pipeline.settings = settings.get_settings()
    events = boto3.client("events", region_name="us-east-1")
    events.create_event_bus(Name="img2img-bus")
    url = world.sqs.create_queue(QueueName="img2img-events")["QueueUrl"]
    arn = world.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName="img2img-bus", EventPattern=json.dumps({"source": ["bedrock-img2img"]}))
    events.put_targets(Rule="all", EventBusName="img2img-bus", Targets=[{"Id": "q", "Arn": arn}])
    world.pipeline.events = EventBridgePublisher("img2img-bus")
    world.events_url = url
    return world


def published(world, detail_type: str = bulk.COMPLETED_EVENT) -> list[dict]:
    messages = world.sqs.receive_message(QueueUrl=world.events_url, MaxNumberOfMessages=10).get("Messages", [])
    return [e for e in (json.loads(m["Body"]) for m in messages) if e["detail-type"] == detail_type]


def submit(world, rows: list[tuple[str, str, str | None]]) -> DynamoBulkProgress:
    """What `img2img bulk submit` leaves behind: the CSV manifest and the progress item."""
    world.s3.put_object(Bucket=OUTPUT, Key=bulk.manifest_key(ARGS.output_prefix, ARGS.bulk_id),
                        Body=bulk.encode_manifest(rows).encode())
    store = DynamoBulkProgress(TABLE)
    store.create(ARGS.bulk_id, {"rows": len(rows), "output_prefix": ARGS.output_prefix, "params": ARGS.params})
    return store


def batch_event(*tasks: tuple[str, str, str | None]) -> dict:
    return {"invocationSchemaVersion": "2.0", "invocationId": "inv-1",
            "job": {"id": "f3cc4f60", "userArguments": ARGS.user_arguments()},
            "tasks": [{"taskId": f"t{i}", "s3Key": bulk.encode_manifest([t]).split(",")[1].strip(),
                       "s3VersionId": t[2], "s3Bucket": t[0]} for i, t in enumerate(tasks)]}


def enqueue(*tasks) -> dict:
    from img2img.handlers import bulk_enqueue

    bulk_enqueue.progress.cache_clear()
    bulk_enqueue.overrides.cache_clear()
    return bulk_enqueue.handler(batch_event(*tasks), Context())


def drain(world) -> list[str]:
    messages = world.sqs.receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    for m in messages:
        world.sqs.delete_message(QueueUrl=world.queue_url, ReceiptHandle=m["ReceiptHandle"])
    return [m["Body"] for m in messages]


def report(world) -> list[dict]:
    body = world.s3.get_object(Bucket=OUTPUT, Key=bulk.report_key(ARGS.output_prefix, ARGS.bulk_id))["Body"].read()
    return list(csv.DictReader(io.StringIO(body.decode())))


def run_rows(world, rows, responses: int) -> list[str]:
    """Enqueue and run the rows; the report request the last one sends, as it waits on the queue."""
    enqueue(*rows)
    for _ in range(responses):
        world.stub.add_response("invoke_model", sd35_ok(seed=3))
    world.run(*drain(world))
    return drain(world)


def test_the_last_row_asks_once_for_the_report_and_the_report_lists_every_row(world2):
    world2.put("shop/red shoe.png", png_bytes())
    rows = [(INPUT, "shop/red shoe.png", None), (INPUT, "shop/gone.png", None), ("not-ours", "x.png", None)]
    progress = submit(world2, rows)
    requests = run_rows(world2, rows, responses=1)
    assert [json.loads(b) for b in requests] == [{"type": "img2img.bulk-report", "bulk_id": "bulk-7"}]
    assert progress.get("bulk-7").completed_at is None  # not before the report is written

    world2.run(*requests)
    assert report(world2) == [
        {"bucket": INPUT, "key": "shop/red shoe.png", "version_id": "", "status": "succeeded", "error_code": "",
         "output_key": "bulk/shop/shop/red shoe.png.png", "record_key": "bulk/shop/shop/red shoe.png.json"},
        {"bucket": INPUT, "key": "shop/gone.png", "version_id": "", "status": "failed",
         "error_code": "source_not_found", "output_key": "", "record_key": "bulk/shop/shop/gone.png.json"},
        {"bucket": "not-ours", "key": "x.png", "version_id": "", "status": "rejected",
         "error_code": "bucket_not_allowed", "output_key": "", "record_key": ""}]
    [event] = published(world2)
    assert event["source"] == "bedrock-img2img"
    assert schema_check.check(event["detail"], schema_check.load("BulkJobCompleted")) == []
    assert event["detail"]["counts"] == {"succeeded": 1, "failed": 1, "rejected": 1}
    assert event["detail"]["errors"] == {"source_not_found": 1, "bucket_not_allowed": 1}
    assert event["detail"]["report"] == {"bucket": OUTPUT, "key": "bulk/shop/_bulk/bulk-7/report.csv"}
    assert progress.get("bulk-7").completed_at == event["detail"]["completed_at"]

    world2.run(*requests)  # a duplicate delivery of the request: no second event
    assert published(world2) == []


def test_a_row_whose_message_comes_back_is_counted_once(world2):
    world2.put("shop/a.png", png_bytes())
    rows = [(INPUT, "shop/a.png", None), (INPUT, "shop/b.png", None)]
    progress = submit(world2, rows)
    enqueue(rows[0])
    [body] = drain(world2)
    world2.stub.add_response("invoke_model", sd35_ok())
    world2.run(body)
    world2.run(body)  # a duplicate delivery
    world2.run(body, receive_count=2)
    state = progress.get("bulk-7")
    assert (state.counts, state.finished, drain(world2)) == ({"succeeded": 1}, False, [])


def test_a_report_write_that_fails_comes_back_with_its_message_and_is_written_once_it_works(world2, monkeypatch):
    rows = [(INPUT, "shop/gone.png", None)]
    progress = submit(world2, rows)
    [request] = run_rows(world2, rows, responses=0)
    store, put = world2.pipeline.store, world2.pipeline.store.put
    key = bulk.report_key(ARGS.output_prefix, ARGS.bulk_id)

    def failing(bucket, key_, *args, **kwargs):
        if key_ == key:
            raise transient("storage_error", "S3 is down")
        return put(bucket, key_, *args, **kwargs)

    monkeypatch.setattr(store, "put", failing)
    answer = world2.run(request)
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m0"}]  # the queue brings it back
    assert progress.get("bulk-7").completed_at is None and published(world2) == []

    monkeypatch.setattr(store, "put", put)
    assert world2.run(request, receive_count=2)["batchItemFailures"] == []
    assert [r["status"] for r in report(world2)] == ["failed"]
    assert len(published(world2)) == 1


def test_an_event_that_cannot_be_published_is_logged_not_a_failure(world2, monkeypatch, caplog):
    rows = [(INPUT, "shop/gone.png", None)]
    progress = submit(world2, rows)
    [request] = run_rows(world2, rows, responses=0)

    def down(detail_type, detail):
        raise RuntimeError("EventBridge is down")

    monkeypatch.setattr(world2.pipeline.events, "publish", down)
    assert world2.run(request)["batchItemFailures"] == []
    assert [r["status"] for r in report(world2)] == ["failed"]
    assert progress.get("bulk-7").completed_at is not None
    assert "could not publish BulkJobCompleted" in caplog.text


def test_a_request_that_cannot_be_sent_is_claimed_again_by_the_rows_retry(world2, monkeypatch):
    rows = [(INPUT, "shop/gone.png", None)]
    progress = submit(world2, rows)
    enqueue(*rows)
    [body] = drain(world2)
    scheduler, defer = world2.pipeline.scheduler, world2.pipeline.scheduler.defer

    def down(message, delay):
        raise transient("storage_error", "SQS is down")

    monkeypatch.setattr(scheduler, "defer", down)
    assert world2.run(body)["batchItemFailures"] == [{"itemIdentifier": "m0"}]
    assert progress.get("bulk-7").report_requested is False
    monkeypatch.setattr(scheduler, "defer", defer)
    assert world2.run(body, receive_count=2)["batchItemFailures"] == []
    assert progress.get("bulk-7").counts == {"failed": 1}  # counted once over both deliveries
    assert [json.loads(b)["type"] for b in drain(world2)] == ["img2img.bulk-report"]


def test_the_same_key_in_two_source_buckets_gives_two_records(world2):
    world2.put("shop/a.png", png_bytes())
    world2.s3.put_object(Bucket=CATALOGUE, Key="shop/a.png", Body=png_bytes(color=(0, 0, 200)))
    rows = [(INPUT, "shop/a.png", None), (CATALOGUE, "shop/a.png", None)]
    submit(world2, rows)
    world2.run(*run_rows(world2, rows, responses=2))
    mine = json.loads(world2.s3.get_object(Bucket=OUTPUT, Key="bulk/shop/shop/a.png.json")["Body"].read())
    theirs = json.loads(world2.s3.get_object(
        Bucket=OUTPUT, Key=f"bulk/shop/_buckets/{CATALOGUE}/shop/a.png.json")["Body"].read())
    assert (mine["source"]["bucket"], theirs["source"]["bucket"]) == (INPUT, CATALOGUE)
    assert mine["status"] == theirs["status"] == "succeeded"
    assert [r["output_key"] for r in report(world2)] == [
        "bulk/shop/shop/a.png.png", f"bulk/shop/_buckets/{CATALOGUE}/shop/a.png.png"]


def test_an_inventory_manifests_rows_are_the_reports_rows(world2):
    """An inventory's bulk job names its manifest.json in the definition; the report reads it again."""
    world2.put("shop/gone-1.png", b"")  # an empty file: not an image
    data = gzip.compress(f'"{CATALOGUE}","shop/gone-2.png","7"\n"{INPUT}","shop/gone-1.png","7"\n'.encode())
    world2.s3.put_object(Bucket=CATALOGUE, Key="inv/files/a.csv.gz", Body=data)
    manifest = {"sourceBucket": INPUT, "destinationBucket": f"arn:aws:s3:::{CATALOGUE}", "fileFormat": "CSV",
                "fileSchema": "Bucket, Key, Size", "files": [{"key": "inv/files/a.csv.gz", "size": len(data)}]}
    world2.s3.put_object(Bucket=CATALOGUE, Key="inv/manifest.json", Body=json.dumps(manifest).encode())
    store = DynamoBulkProgress(TABLE)
    store.create(ARGS.bulk_id, {"rows": 2, "output_prefix": ARGS.output_prefix, "manifest": {
        "bucket": CATALOGUE, "key": "inv/manifest.json", "format": bulk.INVENTORY_FORMAT}})
    rows = [(CATALOGUE, "shop/gone-2.png", None), (INPUT, "shop/gone-1.png", None)]
    world2.run(*run_rows(world2, rows, responses=0))
    assert [(r["bucket"], r["key"], r["status"]) for r in report(world2)] == [
        (CATALOGUE, "shop/gone-2.png", "failed"), (INPUT, "shop/gone-1.png", "failed")]
