"""Bulk jobs' pure parts: the manifest as S3 Batch Operations reads it, the job's arguments, the answers."""
from __future__ import annotations

import json
import re

import pytest

from img2img.core import bulk
from img2img.core import params as P
from img2img.core.errors import JobError, transient
from img2img.core.pipeline import Pipeline
from img2img.core.triggers import parse_body
from img2img.models.registry import adapter_for
from img2img.settings import Settings


def test_manifest_rows_with_url_encoded_keys_are_decoded_once():
    text = ("shop,products/red%20shoe.jpg\n"
            "shop,products/caf%C3%A9+menu.png\n"
            "shop,100%25/a%2Bb.jpg\n")
    rows = bulk.parse_manifest(text)
    assert [r.key for r in rows] == ["products/red shoe.jpg", "products/café menu.png", "100%/a+b.jpg"]
    assert [r.line for r in rows] == [1, 2, 3]
    assert rows[0].raw_key == "products/red%20shoe.jpg"
    assert all(r.version_id is None for r in rows)
    assert bulk.manifest_fields(rows) == ["Bucket", "Key"]


def test_manifest_with_versions_and_blank_lines():
    rows = bulk.parse_manifest("shop,a.jpg,v1\n\nshop,b.jpg,v2\n")
    assert [(r.key, r.version_id) for r in rows] == [("a.jpg", "v1"), ("b.jpg", "v2")]
    assert bulk.manifest_fields(rows) == ["Bucket", "Key", "VersionId"]


def test_encoded_manifest_round_trips():
    rows = [("shop", "a b/é+1.jpg", None), ("shop", "c,d.jpg", None)]
    parsed = bulk.parse_manifest(bulk.encode_manifest(rows))
    assert [(r.bucket, r.key, r.version_id) for r in parsed] == rows


@pytest.mark.parametrize("text, problem", [
    ("shop\n", "line 1: 1 fields"),
    ("shop,a.jpg,v1,extra\n", "line 1: 4 fields"),
    ("Not_A_Bucket,a.jpg\n", "line 1: 'Not_A_Bucket' is not a bucket name"),
    ("shop,\n", "line 1: the key is empty"),
    ("", "no rows"),
    ("shop,a.jpg,v1\nshop,b.jpg\n", "some rows have a version and some do not"),
])
def test_bad_manifests_name_the_line(text, problem):
    with pytest.raises(bulk.ManifestError) as caught:
        bulk.parse_manifest(text)
    assert problem in str(caught.value)


def test_buckets_the_deployment_may_not_read_are_refused_up_front():
    settings = Settings(output_bucket="out", input_bucket="inbox", bulk_source_buckets=("catalogue",))
    rows = bulk.parse_manifest("inbox,a.jpg\ncatalogue,b.jpg\n", settings.bulk_readable)
    assert len(rows) == 2
    with pytest.raises(bulk.ManifestError) as caught:
        bulk.parse_manifest("inbox,a.jpg\nsomeone-else,b.jpg\n", settings.bulk_readable)
    assert "line 2: bucket 'someone-else' is not one this deployment may read" in str(caught.value)


def test_too_many_rows():
    with pytest.raises(bulk.ManifestError, match="3 rows; at most 2"):
        bulk.parse_manifest("s3b,a.jpg\ns3b,b.jpg\ns3b,c.jpg\n", max_rows=2)


# ---- arguments --------------------------------------------------------------------------------

def test_arguments_round_trip_within_s3_batch_operations_limits():
    args = bulk.BulkArguments("b-1", "bulk/shop/", {"operation": "remove-background"})
    user = args.user_arguments()
    assert set(user) == {"bulkId", "outputPrefix", "params"}
    assert all(isinstance(v, str) and len(v) <= 1024 for v in user.values())
    assert bulk.parse_arguments(user) == args


def test_a_prompt_too_long_for_user_arguments_is_refused_before_submitting():
    args = bulk.BulkArguments("b-1", "bulk/", {"prompt": "x" * 1100})
    with pytest.raises(JobError, match="at most 1,024 per argument"):
        args.user_arguments()


@pytest.mark.parametrize("user, problem", [
    ({"bulkId": "b 1", "outputPrefix": "bulk/"}, "bulkId is not a valid bulk job id"),
    ({"bulkId": "b1"}, "outputPrefix is required"),
    ({"bulkId": "b1", "outputPrefix": "../up/"}, "outputPrefix has a '.' or '..' segment"),
    ({"bulkId": "b1", "outputPrefix": "bulk/", "params": "[1]"}, "params must be a JSON object"),
    ({"bulkId": "b1", "outputPrefix": "bulk/", "prompt": "hi"}, "prompt is not a bulk job argument"),
    (None, "userArguments must be an object"),
])
def test_bad_arguments_are_permanent(user, problem):
    with pytest.raises(JobError) as caught:
        bulk.parse_arguments(user)
    assert caught.value.code == "invalid_parameters" and not caught.value.retryable
    assert problem in caught.value.message


def test_the_job_message_is_a_job_the_worker_parses_with_its_bulk_id():
    args = bulk.parse_arguments({"bulkId": "b-7", "outputPrefix": "bulk/shop", "params": '{"prompt": "x"}'})
    [trigger] = parse_body(json.dumps(args.job_message("shop", "a b.jpg", "v1")))
    assert (trigger.kind, trigger.bucket, trigger.key, trigger.version_id) == ("job", "shop", "a b.jpg", "v1")
    assert trigger.bulk_id == "b-7" and trigger.origin == "bulk" and trigger.error is None
    assert trigger.output == {"prefix": "bulk/shop/"} and trigger.params == {"prompt": "x"}


def test_external_jobs_cannot_claim_a_bulk_id():
    event = {"detail-type": "ImageGenerationRequested", "source": "my.app",
             "detail": {"source": "s3://shop/a.jpg", "bulk_id": "b-7"}}
    [trigger] = parse_body(json.dumps(event))
    assert trigger.bulk_id is None and trigger.error is not None


# ---- parameters and cost --------------------------------------------------------------------------

@pytest.fixture
def validate():
    settings = Settings(output_bucket="out", input_bucket="in")
    pipeline = Pipeline(settings, store=None, model=None, registry=adapter_for)
    layer = P.deployment_layer(settings.model_id, settings.output_format, settings.default_prompt,
                               settings.default_params)
    return lambda params: bulk.check_params(params, layer, pipeline.validate)


def test_params_are_validated_like_every_job(validate):
    assert validate({"operation": "remove-background"}) == "remove-background"
    assert validate({"prompt": "a watercolor", "strength": 0.5}) == "image-to-image"
    assert validate({}) == "image-to-image"  # the prompt may come from a row's sidecar
    with pytest.raises(JobError) as caught:
        validate({"operation": "remove-background", "strength": 7})
    assert caught.value.code == "invalid_parameters"
    with pytest.raises(JobError):
        validate({"operation": "no-such-thing"})


def test_estimated_cost():
    assert bulk.estimated_cost(1000, "image-to-image") == 80.0
    assert bulk.estimated_cost(10, "upscale-creative") == 1.4
    assert bulk.estimated_cost(100, "remove-background") == 4.0


# ---- the answer --------------------------------------------------------------------------------

def test_tasks_decode_keys_and_refuse_tasks_without_an_object():
    event = {"tasks": [{"taskId": "t1", "s3Bucket": "shop", "s3Key": "red%20shoe.jpg", "s3VersionId": None},
                       {"taskId": "t2", "s3Bucket": "shop"}]}
    tasks, failed = bulk.tasks_of(event)
    assert tasks == [bulk.Task("t1", "shop", "red shoe.jpg", None)]
    assert failed == [{"taskId": "t2", "resultCode": "PermanentFailure",
                       "resultString": "the task names no s3Bucket and s3Key"}]


def test_result_codes_follow_the_error_table():
    assert bulk.result_for(transient("storage_error", "queue down"))[0] == "TemporaryFailure"
    assert bulk.result_for(JobError("invalid_parameters", "bad"))[0] == "PermanentFailure"
    long = bulk.result("t", "Succeeded", "x" * 5000)
    assert len(long["resultString"]) == 1024


def test_progress_bar_counts_per_status_and_error_code():
    progress = bulk.progress_of("b", {"n_succeeded": 28, "n_failed": 2, "e_source_not_found": 2}, {"rows": 50})
    assert progress.done == 30 and not progress.finished
    bar = bulk.progress_bar(progress, width=10)
    assert bar.startswith("[######....] 30/50")
    assert "failed 2 succeeded 28" in bar and "(source_not_found 2)" in bar
    assert bulk.progress_of("b", {"n_succeeded": 50}, {"rows": 50}).finished


# ---- JSONL manifests: per-row overrides -----------------------------------------------------------

def test_jsonl_rows_carry_their_overrides_and_encode_keys_for_s3():
    text = ('{"bucket": "shop", "key": "red shoe.jpg"}\n'
            '\n'
            '{"bucket": "shop", "key": "café.png", "version_id": "v1", "params": {"prompt": "a sketch"}}\n')
    with pytest.raises(bulk.ManifestError, match="some rows have a version"):
        bulk.parse_jsonl_manifest(text)
    rows = bulk.parse_jsonl_manifest(text.replace(', "version_id": "v1"', ""))
    assert [(r.line, r.key, r.raw_key, r.params) for r in rows] == [
        (1, "red shoe.jpg", "red%20shoe.jpg", None), (3, "café.png", "caf%C3%A9.png", {"prompt": "a sketch"})]
    document = bulk.overrides_document(rows)
    assert document == {bulk.row_id("shop", "café.png", None): {"prompt": "a sketch"}}
    args = bulk.BulkArguments("b-1", "bulk/", {"prompt": "a watercolor", "seed": 1}, overrides="_bulk/b-1/o.json")
    assert bulk.parse_arguments(args.user_arguments()) == args
    message = args.job_message("shop", "café.png", None, document[bulk.row_id("shop", "café.png", None)])
    assert message["params"] == {"prompt": "a sketch", "seed": 1}  # the row's fields win, field by field


@pytest.mark.parametrize("line, problem", [
    ("not json", "line 1: not JSON"),
    ('{"bucket": "shop", "key": "a.jpg", "prompt": "x"}', "a row is {bucket, key, version_id?, params?}"),
    ('{"bucket": "shop", "key": 7}', "bucket and key must be strings"),
    ('{"bucket": "shop", "key": "a.jpg", "params": "x"}', "params must be a JSON object"),
])
def test_bad_jsonl_rows_name_the_line(line, problem):
    with pytest.raises(bulk.ManifestError, match=re.escape(problem)):
        bulk.parse_jsonl_manifest(line + "\n")


def test_the_emulated_service_reads_answers_as_s3_batch_operations_does():
    from img2img_local.batch_operations import _answer_for

    answer = {"treatMissingKeysAs": "TemporaryFailure", "results": [
        {"taskId": "t1", "resultCode": "Succeeded", "resultString": "queued"},
        {"taskId": "t2", "resultCode": "Maybe", "resultString": "?"}]}
    assert _answer_for(answer, "t1") == ("Succeeded", "queued")
    assert _answer_for(answer, "t2")[0] == "PermanentFailure"  # an unknown code is not success
    assert _answer_for(answer, "t3") == ("TemporaryFailure", "the answer left this task out")
    assert _answer_for(None, "t1")[0] == "PermanentFailure"


def test_the_batch_operations_job_request_matches_the_s3control_api():
    import boto3
    from botocore.stub import Stubber

    from img2img.aws.bulk import create_batch_job

    s3control = boto3.client("s3control", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    args = bulk.BulkArguments("bulk-1", "bulk/shop/", {"operation": "remove-background"})
    expected = {
        "AccountId": "123456789012", "ConfirmationRequired": False, "Priority": 10,
        "RoleArn": "arn:aws:iam::123456789012:role/bops", "ClientRequestToken": "bulk-1",
        "Description": "img2img bulk job bulk-1",
        "Operation": {"LambdaInvoke": {"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:enq",
                                       "InvocationSchemaVersion": "2.0", "UserArguments": args.user_arguments()}},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": "arn:aws:s3:::out/_bulk/bulk-1/manifest.csv", "ETag": "abc"}},
        "Report": {"Enabled": True, "Bucket": "arn:aws:s3:::out", "Prefix": "_bulk/bulk-1/report",
                   "Format": "Report_CSV_20180820", "ReportScope": "AllTasks"},
    }
    with Stubber(s3control) as stub:  # the stub checks the request against the service model too
        stub.add_response("create_job", {"JobId": "job-1"}, expected)
        assert create_batch_job(account_id="123456789012", function_arn=expected["Operation"]["LambdaInvoke"][
            "FunctionArn"], role_arn=expected["RoleArn"], manifest_bucket="out",
            manifest_key=bulk.manifest_key("", "bulk-1"), manifest_etag="abc", manifest_fields=["Bucket", "Key"],
            report_bucket="out", report_prefix=bulk.report_prefix("", "bulk-1"), arguments=args,
            s3control=s3control) == "job-1"


def test_an_object_named_twice_is_refused_naming_both_lines():
    """A repeated row would be counted twice on a bulk job whose total then never completes."""
    text = "shop,a.png\nshop,b.png\nshop,a.png\nshop,a.png,v1\n"
    with pytest.raises(bulk.ManifestError) as caught:
        bulk.parse_manifest(text.replace(",v1", ""))
    assert "line 3: the same object as line 1 (shop/a.png)" in str(caught.value)
    jsonl = '{"bucket": "shop", "key": "a.png"}\n{"bucket": "shop", "key": "a.png", "params": {"seed": 2}}\n'
    with pytest.raises(bulk.ManifestError, match="line 2: the same object as line 1"):
        bulk.parse_jsonl_manifest(jsonl)
    versioned = "shop,a.png,v1\nshop,a.png,v2\n"  # two versions of one key are two objects
    assert [r.version_id for r in bulk.parse_manifest(versioned)] == ["v1", "v2"]
