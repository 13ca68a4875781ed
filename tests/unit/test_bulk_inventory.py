"""S3 Inventory reports as bulk manifests: manifest.json + gzipped CSV data files -> the same rows a CSV
manifest gives, whatever the fileSchema's column order and however the keys are encoded."""
from __future__ import annotations

import csv
import gzip
import io
import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2img.core import bulk

OPTIONAL_COLUMNS = ["Size", "LastModifiedDate", "ETag", "StorageClass", "IsLatest", "IsDeleteMarker",
                    "EncryptionStatus"]
KEY_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)


def inventory(columns: list[str], rows: list[dict[str, str]], files: int = 1, file_format: str = "CSV",
              encode=lambda key: quote(key, safe="/")) -> tuple[str, dict[str, bytes]]:
    """(manifest.json text, data file key -> gzipped CSV) as S3 Inventory writes them (every field quoted)."""
    data: dict[str, bytes] = {}
    chunks = [rows[i::files] for i in range(files)]
    for n, chunk in enumerate(chunks):
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for row in chunk:
            writer.writerow([encode(row[c]) if c == "Key" else row.get(c, "x") for c in columns])
        data[f"inv/shop/daily/2026-12-01T01-00Z/files/{n}.csv.gz"] = gzip.compress(out.getvalue().encode())
    manifest = {"sourceBucket": "shop", "destinationBucket": "arn:aws:s3:::inventories",
                "version": "2016-11-30", "creationTimestamp": "1764550800000", "fileFormat": file_format,
                "fileSchema": ", ".join(columns),
                "files": [{"key": k, "size": len(v), "MD5checksum": "0" * 32} for k, v in data.items()]}
    return json.dumps(manifest), data


def parsed(text: str, data: dict[str, bytes], **kw) -> list[bulk.ManifestRow]:
    return bulk.parse_inventory(bulk.parse_inventory_manifest(text), data.__getitem__, **kw)


@settings(max_examples=60, deadline=None)
@given(columns=st.permutations(["Bucket", "Key", *OPTIONAL_COLUMNS[:3]]),
       keys=st.lists(KEY_TEXT.filter(lambda k: k.strip("/") == k and len(k.encode()) < 900),
                     min_size=1, max_size=8, unique=True),
       files=st.integers(1, 3), plus_for_space=st.booleans())
def test_any_column_order_and_encoding_gives_the_keys_back(columns, keys, files, plus_for_space):
    encode = (lambda k: quote(k, safe="/").replace("%20", "+")) if plus_for_space else (lambda k: quote(k, safe="/"))
    text, data = inventory(columns, [{"Bucket": "shop", "Key": k} for k in keys], files=min(files, len(keys)),
                           encode=encode)
    rows = parsed(text, data)
    assert sorted(r.key for r in rows) == sorted(keys)
    assert {r.bucket for r in rows} == {"shop"}
    assert all(r.version_id is None for r in rows)
    assert [r.line for r in rows] == list(range(1, len(keys) + 1))
    assert bulk.manifest_spec(rows, inventory=True) == {"Format": "S3InventoryReport_CSV_20161130"}


@settings(max_examples=30, deadline=None)
@given(columns=st.permutations(["Bucket", "Key", "VersionId", "IsLatest"]),
       versions=st.lists(st.sampled_from(["", "3HL4kqtJvjVBH40Nrjfkd", "null"]), min_size=1, max_size=6))
def test_versioned_inventories_carry_each_version_and_null_for_the_empty_ones(columns, versions):
    text, data = inventory(columns, [{"Bucket": "shop", "Key": f"a/{i}.jpg", "VersionId": v}
                                     for i, v in enumerate(versions)])
    rows = parsed(text, data)
    assert [r.version_id for r in rows] == [v or "null" for v in versions]


def test_rows_of_a_bucket_this_deployment_may_not_read_are_refused():
    text, data = inventory(["Bucket", "Key"], [{"Bucket": "elsewhere", "Key": "a.jpg"}])
    with pytest.raises(bulk.ManifestError, match="'elsewhere' is not one this deployment may read"):
        parsed(text, data, readable=lambda b: b == "shop")


@pytest.mark.parametrize("file_format", ["ORC", "Parquet"])
def test_orc_and_parquet_inventories_are_named_and_refused(file_format):
    text, _ = inventory(["Bucket", "Key"], [{"Bucket": "shop", "Key": "a.jpg"}], file_format=file_format)
    with pytest.raises(bulk.ManifestError, match=f"the inventory is {file_format}; S3 Batch Operations reads CSV"):
        bulk.parse_inventory_manifest(text)


def test_a_schema_without_bucket_and_key_is_refused():
    text, _ = inventory(["Key", "Size"], [{"Key": "a.jpg"}])
    with pytest.raises(bulk.ManifestError, match="no Bucket and Key columns"):
        bulk.parse_inventory_manifest(text)


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"), ("[]", "a JSON object"),
    (json.dumps({"fileFormat": "CSV", "fileSchema": "Bucket, Key", "files": []}), "no data files"),
])
def test_a_manifest_json_that_is_not_an_inventory_says_why(text, message):
    with pytest.raises(bulk.ManifestError, match=message):
        bulk.parse_inventory_manifest(text)


def test_a_data_file_that_is_not_gzip_or_has_the_wrong_width_is_named():
    text, data = inventory(["Bucket", "Key", "Size"], [{"Bucket": "shop", "Key": "a.jpg"}])
    (name,) = data
    with pytest.raises(bulk.ManifestError, match=f"{name}: not a gzipped UTF-8 CSV"):
        parsed(text, {name: b"plain"})
    with pytest.raises(bulk.ManifestError, match="line 1: 2 fields; the fileSchema has 3"):
        parsed(text, {name: gzip.compress(b'"shop","a.jpg"\n')})


def test_the_destination_bucket_and_the_manifest_name():
    text, data = inventory(["Bucket", "Key"], [{"Bucket": "shop", "Key": "a.jpg"}])
    manifest = bulk.parse_inventory_manifest(text)
    assert manifest.destination_bucket == "inventories" and manifest.files == tuple(data)
    assert bulk.is_inventory_manifest("inv/shop/daily/2026-12-01T01-00Z/manifest.json")
    assert not bulk.is_inventory_manifest("manifest.csv")
    rows = bulk.parse_manifest("shop,a.jpg\n")
    assert bulk.manifest_spec(rows, inventory=False) == {"Format": "S3BatchOperations_CSV_20180820",
                                                         "Fields": ["Bucket", "Key"]}


def test_the_batch_operations_job_for_an_inventory_names_its_manifest_json():
    import boto3
    from botocore.stub import ANY, Stubber

    from img2img.aws.bulk import create_batch_job

    s3control = boto3.client("s3control", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
    args = bulk.BulkArguments("bulk-1", "bulk/shop/", {"operation": "remove-background"})
    rows = bulk.parse_manifest("shop,a.jpg\n")
    expected = {"AccountId": "123456789012", "ConfirmationRequired": False, "Priority": 10, "RoleArn": ANY,
                "ClientRequestToken": "bulk-1", "Description": ANY, "Operation": ANY, "Report": ANY,
                "Manifest": {"Spec": {"Format": "S3InventoryReport_CSV_20161130"},
                             "Location": {"ObjectArn": "arn:aws:s3:::inventories/inv/shop/daily/manifest.json",
                                          "ETag": "abc"}}}
    with Stubber(s3control) as stub:  # checked against the service model: Fields is CSV-only
        stub.add_response("create_job", {"JobId": "job-1"}, expected)
        assert create_batch_job(
            account_id="123456789012", function_arn="arn:aws:lambda:us-east-1:123456789012:function:enq",
            role_arn="arn:aws:iam::123456789012:role/bops", manifest_bucket="inventories",
            manifest_key="inv/shop/daily/manifest.json", manifest_etag="abc", manifest_fields=[],
            report_bucket="out", report_prefix=bulk.report_prefix("", "bulk-1"), arguments=args, s3control=s3control,
            manifest_spec=bulk.manifest_spec(rows, inventory=True)) == "job-1"


def test_the_emulated_service_reads_an_inventory_as_s3_batch_operations_does():
    import boto3
    from moto import mock_aws

    from img2img_local.batch_operations import _inventory_rows

    text, data = inventory(["Size", "Key", "VersionId", "Bucket"],
                           [{"Bucket": "shop", "Key": "a b/é.jpg", "VersionId": ""},
                            {"Bucket": "shop", "Key": "c+d.jpg", "VersionId": "v2"}])
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
        s3.create_bucket(Bucket="inventories")
        for key, body in data.items():
            s3.put_object(Bucket="inventories", Key=key, Body=body)
        rows = _inventory_rows(s3, text)
    # As tasks carry them: keys as written (URL-encoded), an empty version as "null"
    assert rows == [["shop", "a%20b/%C3%A9.jpg", "null"], ["shop", "c%2Bd.jpg", "v2"]]
    assert [bulk.decode_key(r[1]) for r in rows] == ["a b/é.jpg", "c+d.jpg"]
    with pytest.raises(ValueError, match="ORC, not CSV"):
        _inventory_rows(None, json.dumps({**json.loads(text), "fileFormat": "ORC"}))


def test_only_the_input_bucket_and_the_bulk_source_buckets_are_readable():
    from img2img.settings import Settings

    s = Settings(input_bucket="in-bucket", output_bucket="out", bulk_source_buckets=("shop",))
    text, data = inventory(["Bucket", "Key"], [{"Bucket": "shop", "Key": "a.jpg"},
                                               {"Bucket": "in-bucket", "Key": "b.jpg"},
                                               {"Bucket": "else", "Key": "c.jpg"}])
    with pytest.raises(bulk.ManifestError) as refused:
        parsed(text, data, readable=s.bulk_readable)
    assert len(refused.value.problems) == 1 and "'else'" in refused.value.problems[0]
