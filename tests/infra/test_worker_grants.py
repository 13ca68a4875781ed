"""Every AWS call the worker really makes is granted to its role, on the resource it touches.

moto does not enforce IAM, so a missing grant (say, deleting the checkpoint under `_staging/`) passes
every offline test and fails every job in AWS. This test runs the real worker handler over jobs that
reach each step (a companion mask, a sidecar, the checkpoint, the record, the outcome event, C2PA
signing through KMS and SSM, a deferred sidecar check, a throttled retry, bulk rows from a
`bulkSourceBuckets` bucket and their report), records every API call boto3 makes, and checks each one
against the synthesized worker policy: action and resource."""
from __future__ import annotations

import base64
import fnmatch
import io
import json
import sys
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws
from PIL import Image

from img2img.aws.bulk import DynamoBulkProgress
from img2img.core import bulk
from infra_synth import actions, render, synth, worker_statements

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "handlers"))
from aws_world import Context, s3_body, sqs_event

pytestmark = pytest.mark.infra

REGION = "us-east-1"
INPUT, OUTPUT, TABLE, BUS, CHAIN = "grants-in", "grants-out", "grants-idem", "grants-bus", "/img2img/c2pa-chain"
SOURCE = "grants-catalogue"  # a bulk source bucket (bulkSourceBuckets): not the stack's, granted by name
# Which template resource each test resource stands for (its logical id's prefix).
LOGICAL = {INPUT: "StorageInputBucket", OUTPUT: "StorageOutputBucket", TABLE: "IdempotencyTable",
           BUS: "EventsBus", "queue": "IngestJobQueue", "key": "ProvenanceSigningKey"}
INPAINT = "us.stability.stable-image-inpaint-v1:0"


def png(size=(128, 96), color=(40, 90, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def answer() -> dict:
    raw = json.dumps({"seeds": [3], "finish_reasons": [None], "images": [base64.b64encode(png()).decode()]}).encode()
    return {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"}


def iam_actions(service: str, operation: str, params: dict) -> list[str]:
    """The IAM actions an API call needs: a transaction needs each of its items' own actions."""
    if service == "dynamodb" and operation == "TransactWriteItems":
        verbs = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem"}
        return [f"dynamodb:{verbs[kind]}" for item in params["TransactItems"] for kind in item]
    return [iam_action(service, operation, params)]


def iam_action(service: str, operation: str, params: dict) -> str:
    """The IAM action an API call needs (S3's read calls by the version they name)."""
    if service == "s3":
        if operation in ("HeadObject", "GetObject"):
            return "s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject"
        if operation == "ListObjectsV2":
            return "s3:ListBucket"
    prefix = {"bedrock-runtime": "bedrock", "events": "events"}.get(service, service)
    return f"{prefix}:{operation}"


def touched(service: str, params: dict, queue_url: str, key_arn: str) -> tuple[str, str]:
    """(logical id prefix, the part of the ARN after it) of what a call touches."""
    if service == "s3":
        bucket, key = params["Bucket"], params.get("Key")
        if bucket == SOURCE:  # granted by its name
            return "", f"arn:${{AWS::Partition}}:s3:::{bucket}" + (f"/{key}" if key is not None else "")
        return LOGICAL[bucket], f"/{key}" if key is not None else ""
    if service == "dynamodb":
        tables = params.get("RequestItems") or {i[k]["TableName"] for i in params.get("TransactItems", []) for k in i}
        return LOGICAL[params.get("TableName") or next(iter(tables))], ""
    if service == "events":
        return LOGICAL[params["Entries"][0]["EventBusName"]], ""
    if service == "sqs":
        assert params["QueueUrl"] == queue_url
        return LOGICAL["queue"], ""
    if service == "kms":
        assert params["KeyId"] == key_arn
        return LOGICAL["key"], ""
    if service == "ssm":
        return "", params["Name"]
    if service == "bedrock-runtime":
        return "", params["modelId"]
    raise AssertionError(f"an unexpected service: {service}")


def granted(statements: list[dict], action: str, logical: str, rest: str) -> bool:
    for statement in statements:
        if not any(fnmatch.fnmatchcase(action, a) for a in actions(statement)):
            continue
        listed = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for resource in map(str, listed):
            if logical and resource.startswith(f"${{{logical}"):
                if fnmatch.fnmatchcase(rest, resource.split(".Arn}", 1)[1]):
                    return True
            elif not logical and rest.startswith("arn:"):
                if fnmatch.fnmatchcase(rest, resource):
                    return True
            elif not logical and (resource == "*" or resource.endswith(rest) or rest.split(".", 1)[-1] in resource):
                return True
    return False


@pytest.fixture
def calls(monkeypatch):
    """The worker handler run over jobs that reach every step; every boto3 call it made."""
    from img2img import assembly, settings
    from img2img.aws import clients
    from img2img_local.signing import certify_kms_key

    for name in [n for n in list(__import__("os").environ) if n.startswith(("IMG2IMG_", "AWS_ENDPOINT_URL"))]:
        monkeypatch.delenv(name)
    recorded: list[tuple[str, str, dict]] = []
    with mock_aws():
        for name, value in {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
                            "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "Grants"}.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INPUT, OUTPUT, SOURCE):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=INPUT, VersioningConfiguration={"Status": "Enabled"})
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        queue_url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="grants-jobs")["QueueUrl"]
        boto3.client("events", region_name=REGION).create_event_bus(Name=BUS)
        kms = boto3.client("kms", region_name=REGION)
        key_arn = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
        boto3.client("ssm", region_name=REGION).put_parameter(Name=CHAIN, Value=certify_kms_key(kms, key_arn),
                                                              Type="String", Tier="Advanced")
        for name, value in {"INPUT_BUCKET": INPUT, "OUTPUT_BUCKET": OUTPUT, "IDEMPOTENCY_TABLE": TABLE,
                            "JOB_QUEUE_URL": queue_url, "EVENT_BUS_NAME": BUS, "SIDECAR_GRACE_SECONDS": "60",
                            "C2PA_KMS_KEY_ID": key_arn, "C2PA_CERTIFICATE_CHAIN": CHAIN,
                            "BATCH_CONCURRENCY": "1", "BULK_SOURCE_BUCKETS": SOURCE}.items():
            monkeypatch.setenv(f"IMG2IMG_{name}", value)
        for cache in (settings.get_settings, assembly.get_pipeline, clients.client, clients._session):
            cache.cache_clear()
        pipeline = assembly.get_pipeline()
        runtime = boto3.client("bedrock-runtime", region_name=REGION)
        pipeline.model._runtime = runtime
        original = BaseClient._make_api_call

        worker_running = []  # only the worker's calls count, not this test's own uploads

        def record(self, operation, params):
            if worker_running:
                recorded.append((self.meta.service_model.service_name, operation, params))
            return original(self, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", record)
        from img2img.handlers import sqs_worker

        def run(*bodies, receive_count=1):
            worker_running.append(1)
            try:
                return sqs_worker.handler(sqs_event(*bodies, receive_count=receive_count), Context())
            finally:
                worker_running.clear()

        with Stubber(runtime) as stub:
            s3.put_object(Bucket=INPUT, Key="rooms/a.png.mask.png", Body=png(color=(255, 255, 255)))
            s3.put_object(Bucket=INPUT, Key="rooms/a.png.json",
                          Body=json.dumps({"operation": "inpaint", "prompt": "a sofa"}).encode())
            s3.put_object(Bucket=INPUT, Key="rooms/a.png", Body=png())
            stub.add_client_error("invoke_model", "ThrottlingException", http_status_code=429)
            run(s3_body("rooms/a.png", INPUT))  # throttled: the message is retried later
            stub.add_response("invoke_model", answer())
            run(s3_body("rooms/a.png", INPUT), receive_count=2)
            s3.put_object(Bucket=INPUT, Key="waiting/b.png", Body=png())  # no prompt yet: a deferred check
            run(s3_body("waiting/b.png", INPUT))
            # A bulk job's two rows from the source bucket (one missing), then its report.
            arguments = bulk.BulkArguments("bulk-g", "bulk/", {"prompt": "a watercolor"})
            rows = [(SOURCE, "shop/a.png", None), (SOURCE, "shop/gone.png", None)]
            s3.put_object(Bucket=OUTPUT, Key=bulk.manifest_key("bulk/", "bulk-g"),
                          Body=bulk.encode_manifest(rows).encode())
            DynamoBulkProgress(TABLE).create("bulk-g", {"rows": 2, "output_prefix": "bulk/"})
            s3.put_object(Bucket=SOURCE, Key="shop/a.png", Body=png())
            stub.add_response("invoke_model", answer())
            run(*(json.dumps(arguments.job_message(b, k, v)) for b, k, v in rows))
            run(json.dumps(bulk.report_request("bulk-g")))
            stub.assert_no_pending_responses()
        report = s3.get_object(Bucket=OUTPUT, Key=bulk.report_key("bulk/", "bulk-g"))["Body"].read().decode()
        assert ",succeeded," in report and ",source_not_found," in report, report
        record_ = json.loads(s3.get_object(Bucket=OUTPUT, Key="rooms/a.png.json")["Body"].read())
        assert record_["status"] == "succeeded" and "c2pa" in record_["provenance"], record_.get("error")
        for cache in (settings.get_settings, assembly.get_pipeline, clients.client, clients._session):
            cache.cache_clear()
    return [(s, o, p) for s, o, p in recorded], queue_url, key_arn


def test_every_call_the_worker_makes_is_granted(calls, tmp_path):
    made, queue_url, key_arn = calls
    context = {"c2paCertificateChain": CHAIN, "bulkSourceBuckets": [SOURCE]}
    statements = [render(s) for s in worker_statements(synth(context, tmp_path))]
    seen, missing = set(), []
    for service, operation, params in made:
        logical, rest = touched(service, params, queue_url, key_arn)
        for action in iam_actions(service, operation, params):
            seen.add(action)
            if not granted(statements, action, logical, rest):
                missing.append(f"{action} on {logical or ''}{rest}")
    assert not missing, f"the worker role lacks: {sorted(set(missing))}"
    # the run reached every step whose grant matters (else this test would prove little)
    assert {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
            "dynamodb:PutItem", "dynamodb:BatchGetItem", "events:PutEvents", "sqs:SendMessage",
            "sqs:ChangeMessageVisibility",
            "kms:Sign", "ssm:GetParameter", "bedrock:InvokeModel"} <= seen, sorted(seen)
