"""Bulk jobs in the template: the enqueue function, its role, and the S3 Batch Operations role (exactly),
nag clean in the default and KMS configurations."""
from __future__ import annotations

import json

import pytest

from infra_synth import SECURE, as_list, build, of_type, render, role_policies

pytestmark = pytest.mark.infra

HANDLER = "img2img.handlers.bulk_enqueue.handler"


def grants(synth, role_id: str) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for s in (s for doc in role_policies(synth, role_id) for s in doc["Statement"]):
        assert s["Effect"] == "Allow"
        for action in as_list(s["Action"]):
            granted.setdefault(action, set()).update(map(str, render(as_list(s["Resource"]))))
    return granted


def enqueue_function(synth):
    [(lid, fn)] = [(k, v) for k, v in of_type(synth, "AWS::Lambda::Function").items()
                   if v["Properties"].get("Handler") == HANDLER]
    return lid, fn


def batch_role(synth):
    [(rid, role)] = [(k, v) for k, v in of_type(synth, "AWS::IAM::Role").items()
                     if "batchoperations.s3.amazonaws.com" in json.dumps(v["Properties"]["AssumeRolePolicyDocument"])]
    return rid, role


def test_the_batch_operations_role_is_trusted_by_batch_operations_only(default):
    _, role = batch_role(default)
    [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "batchoperations.s3.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert "ManagedPolicyArns" not in role["Properties"]


def test_it_may_invoke_the_enqueue_function_read_manifests_and_write_reports_only(default):
    lid, _ = enqueue_function(default)
    rid, _ = batch_role(default)
    output = default.logical_id(default.stack.storage.output_bucket)
    assert grants(default, rid) == {
        "lambda:InvokeFunction": {f"${{{lid}.Arn}}"},
        "s3:GetObject": {f"${{{output}.Arn}}/_bulk/*/manifest.csv"},
        "s3:GetObjectVersion": {f"${{{output}.Arn}}/_bulk/*/manifest.csv"},
        "s3:PutObject": {f"${{{output}.Arn}}/_bulk/*/report/*"},
    }


def test_the_enqueue_function_may_only_queue_jobs_and_count_rows(default):
    _, fn = enqueue_function(default)
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    granted = grants(default, role)
    queue = default.logical_id(default.stack.ingest.job_queue)
    table = default.logical_id(default.stack.state.table)
    assert granted["dynamodb:UpdateItem"] == {f"${{{table}.Arn}}"}
    assert {a for a in granted if a.startswith("sqs:")} == {"sqs:SendMessage"}
    assert granted["sqs:SendMessage"] == {f"${{{queue}.Arn}}"}
    output = default.logical_id(default.stack.storage.output_bucket)
    assert {a for a in granted if a.startswith("s3:")} == {"s3:GetObject"}
    assert granted["s3:GetObject"] == {f"${{{output}.Arn}}/_bulk/*/overrides.json"}
    assert not any(a.startswith("bedrock:") for a in granted)
    env = fn["Properties"]["Environment"]["Variables"]
    assert render(env["IMG2IMG_JOB_QUEUE_URL"]) == f"${{{queue}}}"
    assert render(env["IMG2IMG_IDEMPOTENCY_TABLE"]) == f"${{{table}}}"


def test_outputs_name_the_function_and_the_role(default):
    outputs = default.template.to_json()["Outputs"]
    assert {"BulkFunctionArn", "BulkRoleArn"} <= set(outputs)


def test_with_kms_the_role_may_use_the_storage_key(tmp_path):
    app, stack, _ = build(SECURE, outdir=tmp_path, with_nag=True)
    app.synth()  # nag: raises on any unacknowledged finding
    from aws_cdk.assertions import Template

    resources = Template.from_stack(stack).to_json()["Resources"]
    rid = stack.resolve(stack.get_logical_id(stack.bulk.batch_role.node.default_child))
    statements = [s for p in resources.values() if p["Type"] == "AWS::IAM::Policy"
                  and {"Ref": rid} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]
    kms = {a for s in statements for a in as_list(s["Action"]) if a.startswith("kms:")}
    assert kms == {"kms:Decrypt", "kms:GenerateDataKey"}


def test_the_api_may_submit_bulk_jobs_that_run_as_the_batch_operations_role_only(default):
    """POST /v1/bulk-jobs: CreateJob (no resource type: "*"), PassRole of exactly that role to exactly
    S3 Batch Operations, the manifest and overrides under _bulk/, the progress item."""
    from infra_synth import one

    role_id, _ = one(default, "AWS::IAM::Role", "ApiRole")
    granted = grants(default, role_id)
    rid, _ = batch_role(default)
    output = default.logical_id(default.stack.storage.output_bucket)
    assert granted["s3:CreateJob"] == {"*"}
    assert granted["iam:PassRole"] == {f"${{{rid}.Arn}}"}
    assert f"${{{output}.Arn}}/_bulk/*" in granted["s3:PutObject"]
    assert {"dynamodb:PutItem", "dynamodb:GetItem"} <= set(granted)
    [passing] = [s for doc in role_policies(default, role_id) for s in doc["Statement"]
                 if "iam:PassRole" in as_list(s["Action"])]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "batchoperations.s3.amazonaws.com"}}
    assert not any(a.startswith("s3:") and a != "s3:CreateJob" and "*" in granted[a] for a in granted)


def test_submit_bulk_job_events_go_to_their_function_on_the_api_role(default):
    """`SubmitBulkJob` on the pipeline's bus -> the bulk events function: the API's role (its submit grants)
    and settings, plus where bulk jobs run; the rule retries a failed invocation."""
    from infra_synth import one

    [(fid, fn)] = [(k, v) for k, v in of_type(default, "AWS::Lambda::Function").items()
                   if v["Properties"].get("Handler") == "img2img.handlers.bulk_events.handler"]
    api_id, api = one(default, "AWS::Lambda::Function", "ApiFunction")
    assert fn["Properties"]["Role"] == api["Properties"]["Role"]
    assert fn["Properties"]["Environment"] == api["Properties"]["Environment"]
    [rule] = [r for r in of_type(default, "AWS::Events::Rule").values()
              if r["Properties"].get("EventPattern", {}).get("detail-type") == ["SubmitBulkJob"]]
    assert rule["Properties"]["EventBusName"] == {"Ref": default.logical_id(default.stack.events.bus)}
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [fid, "Arn"]} and target["RetryPolicy"]["MaximumRetryAttempts"] == 2


SOURCES = {"bulkSourceBuckets": ["shop-catalogue", "shop-inventories"]}


def test_bulk_source_buckets_are_readable_by_the_worker_and_their_inventories_by_batch_operations(tmp_path):
    from infra_synth import synth, worker_statements

    s = synth(SOURCES, tmp_path)
    rid, _ = batch_role(s)
    granted = grants(s, rid)
    inventories = {f"arn:${{AWS::Partition}}:s3:::{b}/{p}" for b in SOURCES["bulkSourceBuckets"]
                   for p in ("*/manifest.json", "*/data/*.csv.gz")}
    assert granted["s3:GetObject"] - {f"${{{s.logical_id(s.stack.storage.output_bucket)}.Arn}}/_bulk/*/manifest.csv"} \
        == inventories
    assert "s3:PutObject" in granted and not any("shop-" in r for r in granted["s3:PutObject"])
    worker = [st for st in worker_statements(s) if st.get("Sid") in ("ReadBulkSourceObjects", "ListBulkSources")]
    assert {(st["Sid"], r) for st in worker for r in as_list(st["Resource"])} == {
        *(("ReadBulkSourceObjects", f"arn:${{AWS::Partition}}:s3:::{b}/*") for b in SOURCES["bulkSourceBuckets"]),
        *(("ListBulkSources", f"arn:${{AWS::Partition}}:s3:::{b}") for b in SOURCES["bulkSourceBuckets"])}
    env = enqueue_function(s)[1]["Properties"]["Environment"]["Variables"]
    assert env["IMG2IMG_BULK_SOURCE_BUCKETS"] == "shop-catalogue,shop-inventories"
    _, enqueue_role = enqueue_function(s)
    assert {"dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"} <= set(
        grants(s, enqueue_role["Properties"]["Role"]["Fn::GetAtt"][0]))


def test_without_bulk_source_buckets_nothing_outside_the_pipeline_is_readable(default):
    statements = [st for doc in role_policies(default, batch_role(default)[0]) for st in doc["Statement"]]
    assert statements and not [st for st in statements if st.get("Sid") == "ReadInventoryManifests"]


def test_bulk_source_buckets_are_nag_clean(tmp_path):
    app, _, _ = build({**SOURCES, "encryption": "kms"}, outdir=tmp_path, with_nag=True)
    app.synth()  # raises on any unacknowledged finding


def test_bulk_source_buckets_must_be_bucket_names():
    from infra.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match="bulkSourceBuckets"):
        PipelineConfig.from_context({"bulkSourceBuckets": ["Not_A_Bucket"]})
    with pytest.raises(ConfigError, match="bulkSourceBuckets"):
        PipelineConfig.from_context({"outputBucketName": "out-bucket", "bulkSourceBuckets": ["out-bucket"]})
