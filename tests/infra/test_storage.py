"""Buckets: encryption, TLS-only policy, public access block, versioning, lifecycle, access logs, removal."""
from __future__ import annotations

import pytest

from img2img.core.records import STAGING_DIR
from infra_synth import of_type, one, render

pytestmark = pytest.mark.infra

BUCKETS = ("StorageInputBucket", "StorageOutputBucket", "StorageAccessLogs")
DATA_BUCKETS = ("StorageInputBucket", "StorageOutputBucket")


def sse(bucket: dict) -> dict:
    return bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]


def test_three_buckets(default):
    assert len(of_type(default, "AWS::S3::Bucket")) == 3
    for prefix in BUCKETS:
        one(default, "AWS::S3::Bucket", prefix)


@pytest.mark.parametrize("prefix", BUCKETS)
def test_public_access_fully_blocked(default, prefix):
    _, bucket = one(default, "AWS::S3::Bucket", prefix)
    assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}


@pytest.mark.parametrize("prefix", BUCKETS)
def test_s3_managed_encryption_by_default(default, prefix):
    _, bucket = one(default, "AWS::S3::Bucket", prefix)
    assert sse(bucket) == {"SSEAlgorithm": "AES256"}


@pytest.mark.parametrize("prefix", BUCKETS)
def test_bucket_policy_denies_plain_http_and_old_tls(default, prefix):
    bucket_id, _ = one(default, "AWS::S3::Bucket", prefix)
    policies = [p for p in of_type(default, "AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"] == {"Ref": bucket_id}]
    assert len(policies) == 1
    statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
    denies = [s for s in statements
              if s["Effect"] == "Deny" and s["Action"] == "s3:*" and s["Principal"] == {"AWS": "*"}]
    conditions = [s["Condition"] for s in denies]
    assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
    assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in conditions
    for s in denies:  # on the bucket and on its objects
        assert {render(r) for r in s["Resource"]} == {f"${{{bucket_id}.Arn}}", f"${{{bucket_id}.Arn}}/*"}


def test_input_and_output_versioned_with_lifecycle(default):
    for prefix in DATA_BUCKETS:
        _, bucket = one(default, "AWS::S3::Bucket", prefix)
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        rules = props["LifecycleConfiguration"]["Rules"]
        assert {"NoncurrentDays": 30} in [r.get("NoncurrentVersionExpiration") for r in rules]
        assert {"DaysAfterInitiation": 7} in [r.get("AbortIncompleteMultipartUpload") for r in rules]
        assert all(r["Status"] == "Enabled" for r in rules)


@pytest.mark.parametrize("synth_name", ["default", "custom"])
def test_staged_model_answers_expire_after_two_days_in_the_output_bucket_only(request, synth_name):
    """The worker's checkpoints (<outputPrefix>_staging/) must not pile up: current and old versions expire."""
    synth = request.getfixturevalue(synth_name)
    _, output = one(synth, "AWS::S3::Bucket", "StorageOutputBucket")
    staging = [r for r in output["Properties"]["LifecycleConfiguration"]["Rules"] if r.get("Prefix")]
    assert staging == [{"Id": "expire-staged-model-answers", "Prefix": f"{synth.config.output_prefix}{STAGING_DIR}",
                        "ExpirationInDays": 2, "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                        "Status": "Enabled"}]
    _, source = one(synth, "AWS::S3::Bucket", "StorageInputBucket")
    assert not [r for r in source["Properties"]["LifecycleConfiguration"]["Rules"] if r.get("Prefix")]


def test_data_buckets_log_to_the_log_bucket(default):
    log_id, log_bucket = one(default, "AWS::S3::Bucket", "StorageAccessLogs")
    prefixes = set()
    for prefix in DATA_BUCKETS:
        _, bucket = one(default, "AWS::S3::Bucket", prefix)
        logging = bucket["Properties"]["LoggingConfiguration"]
        assert logging["DestinationBucketName"] == {"Ref": log_id}
        prefixes.add(logging["LogFilePrefix"])
    assert prefixes == {"input/", "output/"}
    # the log bucket does not log to itself, and lets the S3 logging service (only) write to it
    assert "LoggingConfiguration" not in log_bucket["Properties"]
    policy = next(p for p in of_type(default, "AWS::S3::BucketPolicy").values()
                  if p["Properties"]["Bucket"] == {"Ref": log_id})
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allows and all(s["Principal"] == {"Service": "logging.s3.amazonaws.com"} for s in allows)
    assert all(s["Action"] == "s3:PutObject" for s in allows)


def test_log_bucket_has_abort_multipart_and_expiry(default):
    _, bucket = one(default, "AWS::S3::Bucket", "StorageAccessLogs")
    rule = bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rule["ExpirationInDays"] > 0


def test_retained_by_default_and_no_auto_delete(default):
    for prefix in BUCKETS:
        _, bucket = one(default, "AWS::S3::Bucket", prefix)
        assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    assert not of_type(default, "Custom::S3AutoDeleteObjects")
    # encryption=s3-managed: no storage key; the one key is C2PA's signing key (test_c2pa_signing_key.py), retained too
    keys = of_type(default, "AWS::KMS::Key")
    assert [k for k in keys if not k.startswith("ProvenanceSigningKey")] == []
    assert all(k["DeletionPolicy"] == "Retain" for k in keys.values())


def test_kms_encryption_uses_rotating_customer_key(secure):
    key_id, key = one(secure, "AWS::KMS::Key", "StorageKey")
    assert key["Properties"]["EnableKeyRotation"] is True
    for prefix in DATA_BUCKETS:
        _, bucket = one(secure, "AWS::S3::Bucket", prefix)
        assert sse(bucket) == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}
    # S3 server access logging cannot deliver to an SSE-KMS bucket
    _, log_bucket = one(secure, "AWS::S3::Bucket", "StorageAccessLogs")
    assert sse(log_bucket) == {"SSEAlgorithm": "AES256"}


def test_destroy_removal_policy_deletes_and_empties_buckets(secure):
    for prefix in BUCKETS:
        _, bucket = one(secure, "AWS::S3::Bucket", prefix)
        assert bucket["DeletionPolicy"] == "Delete"
    assert len(of_type(secure, "Custom::S3AutoDeleteObjects")) == 3
    _, key = one(secure, "AWS::KMS::Key", "StorageKey")
    assert key["DeletionPolicy"] == "Delete"
