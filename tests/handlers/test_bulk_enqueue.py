"""The S3 Batch Operations enqueue function with the real event and response shapes (schema 2.0), and the
worker counting each bulk row's one record on the bulk job's progress item."""
from __future__ import annotations

import json

import pytest
from aws_world import INPUT, OUTPUT, TABLE, Context, png_bytes, sd35_ok

from img2img.aws.bulk import DynamoBulkProgress
from img2img.core import bulk

ARGS = bulk.BulkArguments("bulk-1", "bulk/shop/", {"prompt": "a watercolor", "seed": 3})


def batch_event(*tasks: tuple[str, str, str | None], user_arguments: dict | None = None,
                schema: str = "2.0") -> dict:
    """An invocation as S3 Batch Operations sends it: keys URL-encoded as in the manifest."""
    return {
        "invocationSchemaVersion": schema,
        "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
        "job": {"id": "f3cc4f60-61f6-4a2b-8a21-d07600c373ce",
                "userArguments": ARGS.user_arguments() if user_arguments is None else user_arguments},
        "tasks": [{"taskId": f"task-{i}", "s3Key": key, "s3VersionId": version, "s3Bucket": bucket}
                  for i, (bucket, key, version) in enumerate(tasks)],
    }


def enqueue(event: dict) -> dict:
    from img2img.handlers import bulk_enqueue

    bulk_enqueue.progress.cache_clear()
    bulk_enqueue.overrides.cache_clear()
    return bulk_enqueue.handler(event, Context())


def queued(world) -> list[str]:
    messages = world.sqs.receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    for m in messages:
        world.sqs.delete_message(QueueUrl=world.queue_url, ReceiptHandle=m["ReceiptHandle"])
    return [m["Body"] for m in messages]


@pytest.fixture
def progress(world):
    store = DynamoBulkProgress(TABLE)
    store.create(ARGS.bulk_id, {"rows": 2, "output_prefix": ARGS.output_prefix, "params": ARGS.params})
    return store


def test_rows_are_queued_and_each_ends_as_one_counted_record(world, progress):
    world.put("shop/red shoe.png", png_bytes())
    answer = enqueue(batch_event((INPUT, "shop/red%20shoe.png", None), (INPUT, "shop/gone.png", None)))
    assert answer == {
        "invocationSchemaVersion": "2.0", "treatMissingKeysAs": "PermanentFailure",
        "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
        "results": [{"taskId": "task-0", "resultCode": "Succeeded", "resultString": "queued"},
                    {"taskId": "task-1", "resultCode": "Succeeded", "resultString": "queued"}]}
    bodies = queued(world)
    assert [json.loads(b)["source"]["key"] for b in bodies] == ["shop/red shoe.png", "shop/gone.png"]

    world.stub.add_response("invoke_model", sd35_ok(seed=3))
    world.run(*bodies)
    world.stub.assert_no_pending_responses()
    ok = json.loads(world.s3.get_object(Bucket=OUTPUT, Key="bulk/shop/shop/red shoe.png.json")["Body"].read())
    missing = json.loads(world.s3.get_object(Bucket=OUTPUT, Key="bulk/shop/shop/gone.png.json")["Body"].read())
    assert ok["status"] == "succeeded" and ok["params"]["seed"] == 3 and ok["seeds"] == [3]
    assert ok["model_request"]["prompt"] == "a watercolor"
    assert missing["status"] == "failed" and missing["error"]["code"] == "source_not_found"

    p = progress.get("bulk-1")
    assert (p.counts, p.errors, p.finished) == ({"succeeded": 1, "failed": 1}, {"source_not_found": 1}, True)


def test_resubmitting_the_same_rows_does_not_pay_again(world, progress):
    world.put("shop/a.png", png_bytes())
    enqueue(batch_event((INPUT, "shop/a.png", None)))
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(*queued(world))
    enqueue(batch_event((INPUT, "shop/a.png", None)))
    world.run(*queued(world))  # no Bedrock response left: a second call would fail the stub
    world.stub.assert_no_pending_responses()
    assert progress.get("bulk-1").counts == {"succeeded": 1}


def test_a_bucket_the_deployment_may_not_read_is_a_permanent_failure_counted_as_rejected(world, progress):
    answer = enqueue(batch_event(("someone-elses-bucket", "a.png", None)))
    [result] = answer["results"]
    assert result["resultCode"] == "PermanentFailure" and "someone-elses-bucket" in result["resultString"]
    assert queued(world) == []
    p = progress.get("bulk-1")
    assert (p.counts, p.errors) == ({"rejected": 1}, {"bucket_not_allowed": 1})


def test_schema_1_is_refused_for_every_task(world, progress):
    answer = enqueue(batch_event((INPUT, "a.png", None), (INPUT, "b.png", None), schema="1.0"))
    assert answer["invocationSchemaVersion"] == "2.0"
    assert [r["resultCode"] for r in answer["results"]] == ["PermanentFailure", "PermanentFailure"]
    assert "InvocationSchemaVersion 2.0" in answer["results"][0]["resultString"]
    assert queued(world) == []


def test_bad_user_arguments_fail_every_task_permanently(world, progress):
    answer = enqueue(batch_event((INPUT, "a.png", None), user_arguments={"bulkId": "bulk-1"}))
    [result] = answer["results"]
    assert result["resultCode"] == "PermanentFailure" and "outputPrefix is required" in result["resultString"]


def test_a_queue_that_cannot_be_written_is_a_temporary_failure(world, progress, monkeypatch):
    from img2img import settings

    monkeypatch.setenv("IMG2IMG_JOB_QUEUE_URL", world.queue_url + "-deleted")
    settings.get_settings.cache_clear()
    [result] = enqueue(batch_event((INPUT, "a.png", "v1")))["results"]
    assert result["resultCode"] == "TemporaryFailure" and result["resultString"].startswith("storage_error")


def test_a_version_in_the_manifest_is_the_version_the_worker_runs(world, progress):
    old = world.put("shop/a.png", png_bytes())["VersionId"]
    world.put("shop/a.png", png_bytes(color=(0, 0, 200)))
    enqueue(batch_event((INPUT, "shop/a.png", old)))
    [body] = queued(world)
    assert json.loads(body)["source"]["version_id"] == old
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(body)
    record = json.loads(world.s3.get_object(Bucket=OUTPUT, Key="bulk/shop/shop/a.png.json")["Body"].read())
    assert record["source"]["version_id"] == old


def test_a_jsonl_rows_overrides_reach_its_job_field_by_field(world, progress):
    doc = {bulk.row_id(INPUT, "shop/b.png", None): {"prompt": "a pencil sketch"}}
    world.s3.put_object(Bucket=OUTPUT, Key="_bulk/bulk-1/overrides.json", Body=json.dumps(doc).encode())
    args = bulk.BulkArguments(ARGS.bulk_id, ARGS.output_prefix, ARGS.params, overrides="_bulk/bulk-1/overrides.json")
    answer = enqueue(batch_event((INPUT, "shop/a.png", None), (INPUT, "shop/b.png", None),
                                 user_arguments=args.user_arguments()))
    assert [r["resultCode"] for r in answer["results"]] == ["Succeeded", "Succeeded"]
    params = {json.loads(b)["source"]["key"]: json.loads(b)["params"] for b in queued(world)}
    assert params == {"shop/a.png": {"prompt": "a watercolor", "seed": 3},
                      "shop/b.png": {"prompt": "a pencil sketch", "seed": 3}}


def test_overrides_that_are_gone_fail_the_rows_permanently(world, progress):
    args = bulk.BulkArguments(ARGS.bulk_id, ARGS.output_prefix, ARGS.params, overrides="_bulk/bulk-1/overrides.json")
    [result] = enqueue(batch_event((INPUT, "shop/a.png", None), user_arguments=args.user_arguments()))["results"]
    assert result["resultCode"] == "PermanentFailure" and "do not exist" in result["resultString"]
    assert queued(world) == []
    p = progress.get("bulk-1")
    assert (p.counts, p.errors) == ({"rejected": 1}, {"invalid_parameters": 1})
