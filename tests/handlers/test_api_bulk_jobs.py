"""POST /v1/bulk-jobs and GET /v1/bulk-jobs/{id}: the CLI's submit path behind the API, S3 Batch Operations
stubbed at its real CreateJob request shape (moto runs no Batch Operations)."""
from __future__ import annotations

import json

import boto3
import pytest
from api_world import get, post
from aws_world import INPUT, OUTPUT
from botocore.stub import ANY, Stubber

from img2img.core import bulk as core_bulk

FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:img2img-bulk-enqueue"
ROLE = "arn:aws:iam::123456789012:role/img2img-bulk-batch"


@pytest.fixture
def bulk_api(api, monkeypatch):
    """The API with the stack's bulk settings; CreateJob answered by a Stubber that records each request."""
    from img2img import bulk_submit, settings
    from img2img.handlers.api import bulk

    monkeypatch.setenv("IMG2IMG_BULK_FUNCTION_ARN", FUNCTION)
    monkeypatch.setenv("IMG2IMG_BULK_ROLE_ARN", ROLE)
    monkeypatch.setenv("IMG2IMG_MODEL_QUOTAS", json.dumps({"default": 30}))
    settings.get_settings.cache_clear()
    s3control = boto3.client("s3control", region_name="us-east-1")
    stub = Stubber(s3control)
    created = []

    def expect_job(job_id="3a37362c-0000-4000-8000-000000000001"):
        stub.add_response("create_job", {"JobId": job_id}, {
            "AccountId": "123456789012", "ConfirmationRequired": False, "Priority": ANY, "RoleArn": ROLE,
            "ClientRequestToken": ANY, "Description": ANY, "Operation": ANY, "Manifest": ANY, "Report": ANY})
        created.append(job_id)

    bulk.target.cache_clear()
    monkeypatch.setattr(bulk, "target", lambda: bulk_submit.aws_target(settings.get_settings(), s3control=s3control))
    api.expect_job, api.created, api.s3control = expect_job, created, stub
    with stub:
        yield api
        stub.assert_no_pending_responses()  # every CreateJob expected was made, and no other
    settings.get_settings.cache_clear()


def manifest(world, key="manifests/shop.csv", rows=3, bucket=INPUT):
    text = core_bulk.encode_manifest((INPUT, f"catalogue/shoe {n}.png", None) for n in range(rows))
    world.s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
    return f"s3://{bucket}/{key}"


def test_a_bulk_job_is_submitted_through_the_same_path_as_the_cli(bulk_api):
    uri = manifest(bulk_api)
    bulk_api.expect_job()
    answer = post("/v1/bulk-jobs", {"manifest": uri, "operation": "remove-background", "output_prefix": "shop/"})
    assert answer.status == 202, answer.raw
    body = answer.json
    bulk_id = body["bulk_id"]
    assert body == {"bulk_id": bulk_id, "status": "submitted", "rows": 3, "operation": "remove-background",
                    "estimated_cost_usd": 0.12, "output": {"bucket": OUTPUT, "prefix": "api/shop/"},
                    "batch_job_id": bulk_api.created[0], "status_url": f"/prod/v1/bulk-jobs/{bulk_id}"}
    assert answer.headers["location"] == f"/prod/v1/bulk-jobs/{bulk_id}"
    stored = bulk_api.s3.get_object(Bucket=OUTPUT, Key=f"_bulk/{bulk_id}/manifest.csv")["Body"].read().decode()
    assert "shoe%200.png" in stored  # what S3 Batch Operations reads: keys URL-encoded

    status = get(f"/v1/bulk-jobs/{bulk_id}")
    assert status.status == 200, status.raw
    progress = status.json
    assert (progress["status"], progress["rows"], progress["done"], progress["counts"]) == ("running", 3, 0, {})
    # 3 rows left at the model's configured 30 requests per minute: 6 s, whatever has been observed
    assert progress["eta_seconds"] == 6 and progress["report"] is None

    from img2img.handlers.api.bulk import target
    for outcome, code in (("succeeded", None), ("succeeded", None), ("failed", "source_not_found")):
        target().progress.count(bulk_id, outcome, code)
    done = get(f"/v1/bulk-jobs/{bulk_id}").json
    assert done["status"] == "finished" and done["eta_seconds"] == 0
    assert done["counts"] == {"succeeded": 2, "failed": 1} and done["errors"] == {"source_not_found": 1}
    assert done["report"] == {"bucket": OUTPUT, "prefix": f"_bulk/{bulk_id}/report"}


def test_the_cost_ceiling_needs_acknowledge_cost(bulk_api):
    uri = manifest(bulk_api, rows=1300)  # 1,300 x $0.08 = $104 > $100
    refused = post("/v1/bulk-jobs", {"manifest": uri, "params": {"prompt": "a watercolor"}, "output_prefix": "w/"})
    assert refused.status == 422 and refused.json["error"]["code"] == "cost_not_acknowledged"
    assert "$104.00 is above the ceiling $100.00" in refused.json["error"]["message"]
    assert bulk_api.s3.list_objects_v2(Bucket=OUTPUT, Prefix="_bulk/").get("KeyCount", 0) == 0
    bulk_api.expect_job()
    answer = post("/v1/bulk-jobs", {"manifest": uri, "params": {"prompt": "a watercolor"}, "output_prefix": "w/",
                                    "acknowledgeCost": True})
    assert answer.status == 202 and answer.json["estimated_cost_usd"] == 104.0


@pytest.mark.parametrize("body, status, code", [
    ({"manifest": "s3://someone-elses-bucket/m.csv"}, 403, "access_denied"),
    ({"manifest": f"s3://{INPUT}/nothing-here.csv"}, 422, "invalid_manifest"),
    ({"params": {"operation": "remove-background", "strength": 9}}, 422, "invalid_parameters"),
    ({"output_prefix": "../up/"}, 422, "invalid_parameters"),
])
def test_refusals_use_the_error_table_before_anything_is_created(bulk_api, body, status, code):
    request = {"manifest": manifest(bulk_api), "operation": None, "params": {"operation": "remove-background"},
               "output_prefix": "shop/", **body}
    answer = post("/v1/bulk-jobs", {k: v for k, v in request.items() if v is not None})
    assert answer.status == status, answer.raw
    assert answer.json["error"]["code"] == code and answer.json["error"]["message"]
    assert bulk_api.s3.list_objects_v2(Bucket=OUTPUT, Prefix="_bulk/").get("KeyCount", 0) == 0


def test_a_manifest_row_in_a_bucket_the_deployment_may_not_read(bulk_api):
    text = f"{INPUT},a.png\nsomeone-else,b.png\n"
    bulk_api.s3.put_object(Bucket=INPUT, Key="m.csv", Body=text.encode())
    answer = post("/v1/bulk-jobs", {"manifest": f"s3://{INPUT}/m.csv", "operation": "remove-background",
                                    "output_prefix": "x/"})
    assert answer.status == 422 and answer.json["error"]["code"] == "invalid_manifest"
    assert "line 2: bucket 'someone-else' is not one this deployment may read" in answer.json["error"]["message"]


def test_an_idempotency_key_submits_once(bulk_api):
    uri = manifest(bulk_api)
    bulk_api.expect_job()
    request = {"manifest": uri, "operation": "remove-background", "output_prefix": "shop/"}
    first = post("/v1/bulk-jobs", request, headers={"Idempotency-Key": "k-1"})
    again = post("/v1/bulk-jobs", request, headers={"Idempotency-Key": "k-1"})
    assert first.status == again.status == 202 and again.json["bulk_id"] == first.json["bulk_id"]
    assert again.headers["idempotent-replayed"] == "true"  # and the Stubber saw one CreateJob


def test_an_unknown_bulk_job_is_404(bulk_api):
    answer = get("/v1/bulk-jobs/bulk-20260101-000000-abcdef")
    assert answer.status == 404 and answer.json["error"]["code"] == "bulk_job_not_found"


def test_batch_operations_refusing_the_job_is_an_error_of_the_table(bulk_api):
    uri = manifest(bulk_api)
    bulk_api.s3control.add_client_error("create_job", "AccessDenied", "not authorized to pass the role", 403)
    answer = post("/v1/bulk-jobs", {"manifest": uri, "operation": "remove-background", "output_prefix": "shop/"})
    assert answer.status == 403 and answer.json["error"]["code"] == "access_denied"
    assert "S3 Batch Operations refused the job" in answer.json["error"]["message"]
    bulk_api.s3control.add_client_error("create_job", "InternalError", "try again", 500)
    answer = post("/v1/bulk-jobs", {"manifest": uri, "operation": "remove-background", "output_prefix": "shop/"})
    assert answer.status == 503 and answer.headers["retry-after"]


def test_an_empty_manifest_is_invalid(bulk_api):
    bulk_api.s3.put_object(Bucket=INPUT, Key="empty.csv", Body=b"")
    answer = post("/v1/bulk-jobs", {"manifest": f"s3://{INPUT}/empty.csv", "operation": "remove-background",
                                    "output_prefix": "x/"})
    assert answer.status == 422 and answer.json["error"]["code"] == "invalid_manifest", answer.raw


def _inventory(world, rows: list[str], bucket=INPUT) -> str:
    """An S3 Inventory report (manifest.json + one gzipped CSV data file) in `bucket`, as S3 writes it."""
    import csv
    import gzip
    import io
    from urllib.parse import quote

    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for key in rows:
        writer.writerow([INPUT, quote(key, safe="/"), "1024", "2026-12-01T00:00:00.000Z"])
    data_key = "inventory/in/daily/data/0a1b.csv.gz"
    world.s3.put_object(Bucket=bucket, Key=data_key, Body=gzip.compress(out.getvalue().encode()))
    manifest = {"sourceBucket": INPUT, "destinationBucket": f"arn:aws:s3:::{bucket}", "version": "2016-11-30",
                "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size, LastModifiedDate",
                "files": [{"key": data_key, "size": 1, "MD5checksum": "0" * 32}]}
    key = "inventory/in/daily/2026-12-01T01-00Z/manifest.json"
    world.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    return f"s3://{bucket}/{key}"


def test_an_s3_inventory_report_is_a_manifest_checked_row_by_row_and_run_as_csv(bulk_api):
    uri = _inventory(bulk_api, ["catalogue/shoe 1.png", "catalogue/shoe 2.png"])
    bulk_api.expect_job()
    answer = post("/v1/bulk-jobs", {"manifest": uri, "operation": "remove-background", "output_prefix": "inv/"})
    assert answer.status == 202, answer.raw
    assert answer.json["rows"] == 2
    stored = bulk_api.s3.get_object(Bucket=OUTPUT, Key=f"_bulk/{answer.json['bulk_id']}/manifest.csv")["Body"]
    assert stored.read().decode() == f"{INPUT},catalogue/shoe%201.png\n{INPUT},catalogue/shoe%202.png\n"


def test_an_orc_inventory_or_a_repeated_row_is_refused_before_anything_is_created(bulk_api):
    uri = _inventory(bulk_api, ["a.png", "a.png"])
    answer = post("/v1/bulk-jobs", {"manifest": uri, "operation": "remove-background", "output_prefix": "inv/"})
    assert answer.status == 422 and answer.json["error"]["code"] == "invalid_manifest"
    assert "the same object as line 1" in answer.json["error"]["message"]
    key = uri.split("/", 3)[3]
    doc = json.loads(bulk_api.s3.get_object(Bucket=INPUT, Key=key)["Body"].read())
    bulk_api.s3.put_object(Bucket=INPUT, Key=key, Body=json.dumps({**doc, "fileFormat": "ORC"}).encode())
    answer = post("/v1/bulk-jobs", {"manifest": uri, "operation": "remove-background", "output_prefix": "inv/"})
    assert answer.status == 422 and "the inventory is ORC" in answer.json["error"]["message"]
    assert bulk_api.s3.list_objects_v2(Bucket=OUTPUT, Prefix="_bulk/").get("KeyCount", 0) == 0


def test_the_ceiling_is_the_deployments_bulk_max_cost(bulk_api, monkeypatch):
    """bulkMaxCostUsd (IMG2IMG_BULK_MAX_COST_USD): $10 refuses what the default $100 would take."""
    from img2img import settings

    monkeypatch.setenv("IMG2IMG_BULK_MAX_COST_USD", "10")
    settings.get_settings.cache_clear()
    uri = manifest(bulk_api, rows=200)  # 200 x $0.08 = $16
    refused = post("/v1/bulk-jobs", {"manifest": uri, "params": {"prompt": "a watercolor"}, "output_prefix": "w/"})
    assert refused.status == 422 and refused.json["error"]["code"] == "cost_not_acknowledged"
    assert "$16.00 is above the ceiling $10.00" in refused.json["error"]["message"]
