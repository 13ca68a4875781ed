"""A bulk job through the local stack as a user runs it: a 50-row manifest submitted, S3 Batch Operations
(emulated) invoking the enqueue function per row, the worker writing one record per row and counting it,
the completion report, and the progress bar reading the counter item.

The waits are generous (a loaded machine is slow) and end inside pytest's own timeout, so that a stall
fails here, naming what is missing: rows without a record (a lost row) or records the progress item did
not count (a lost count), never as a bare timeout."""
from __future__ import annotations

import contextlib
import io
import json
import logging

import pytest
from PIL import Image

from img2img.core import bulk as core_bulk
from img2img_local import bulk
from img2img_local.batch_operations import read_report
from img2img_local.project import load_pipeline_config
from img2img_local.stack import LocalStack

pytestmark = pytest.mark.e2e

ROWS, MISSING = 50, 3
CATALOGUE = "catalogue/"  # an excluded prefix: the photos are there, uploads do not start jobs by themselves
# The 50 rows take ~7 s on a quiet machine, ~15 s at load average 7: the waits are 15-30x that, and fit in
# the test's own pytest timeout.
JOB_WAIT_S, ROWS_WAIT_S = 120, 240
TEST_TIMEOUT_S = 2 * (JOB_WAIT_S + ROWS_WAIT_S) + 60  # above every wait of the test together (pyproject's is 300)


def png(n: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (n * 5 % 256, 120, 200 - n)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    config = load_pipeline_config(["logLevel=WARNING", f'excludedPrefixes=["{CATALOGUE}"]'])
    with LocalStack(config, visibility_timeout_seconds=10, serve_api=False) as running:
        yield running


def wait_for_batch_job(stack, job_id: str, timeout: float = JOB_WAIT_S) -> dict:
    """The emulated S3 Batch Operations job at its end (every row invoked), or a failure saying how far it got."""
    job = stack.batch_operations.wait(job_id, timeout=timeout)
    assert job["Status"] in ("Complete", "Failed"), f"the batch job is still {job['Status']} after {timeout} s: {job}"
    return job


def wait_for_rows(stack, target, bulk_id: str, keys: list[str], prefix: str, timeout: float = ROWS_WAIT_S):
    """Watch the progress item (as `img2img bulk status --watch`) until every row is counted: (progress, bar
    lines). On timeout, fail with what is missing, from the records themselves and the queues."""
    bars = io.StringIO()
    progress = bulk.watch(target, bulk_id, out=bars, interval=0.5, timeout=timeout)
    if progress.finished:
        return progress, bars.getvalue().splitlines()
    s3, r = stack.client("s3"), stack.resources
    recorded: dict[str, str] = {}
    for key in keys:
        with contextlib.suppress(s3.exceptions.ClientError):  # no record
            recorded[key] = s3.head_object(Bucket=r.output_bucket, Key=f"{prefix}{key}.json")["Metadata"]["status"]
    by_status: dict[str, int] = {}
    for status in recorded.values():
        by_status[status] = by_status.get(status, 0) + 1
    sqs = stack.client("sqs")
    depth = {name: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        for name, url in (("jobs", r.job_queue_url), ("dlq", r.dlq_url))}
    lost_rows = [key for key in keys if key not in recorded]
    lost_counts = {status: n - progress.counts.get(status, 0) for status, n in by_status.items()
                   if n > progress.counts.get(status, 0)}
    stats = stack.stats()
    pytest.fail(
        f"bulk job {bulk_id}: {progress.done}/{progress.total} rows counted after {timeout} s "
        f"(counts {progress.counts}, errors {progress.errors}); "
        f"rows without a record ({len(lost_rows)}): {lost_rows[:10]}; "
        f"records the progress item did not count: {lost_counts or 'none'} (records {by_status}); "
        f"queues {depth}; worker errors {stats.get('errors')}, timeouts {stats.get('timeouts')}; "
        f"last bars {bars.getvalue().splitlines()[-3:]}")


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_a_50_row_manifest_ends_with_50_records_matching_counts_and_a_report(stack):
    s3, r = stack.client("s3"), stack.resources
    keys = [f"{CATALOGUE}shoe {n:02d}.png" for n in range(ROWS)]
    for n, key in enumerate(keys[MISSING:], start=MISSING):  # the first rows' objects do not exist
        s3.put_object(Bucket=r.input_bucket, Key=key, Body=png(n))
    manifest = core_bulk.encode_manifest((r.input_bucket, key, None) for key in keys)
    assert "shoe%2000.png" in manifest  # keys URL-encoded, as S3 Batch Operations reads them

    target = bulk.stack_target(stack)
    out = io.StringIO()
    bulk_id, job_id = bulk.submit(target, manifest, {"operation": "remove-background"}, "bulk/shop/", out=out)
    assert f"{ROWS} rows, operation remove-background" in out.getvalue()
    assert "estimated model cost $2.00" in out.getvalue()

    job = wait_for_batch_job(stack, job_id)
    assert job["Status"] == "Complete", job
    assert job["ProgressSummary"] == {"TotalNumberOfTasks": ROWS, "NumberOfTasksSucceeded": ROWS,
                                      "NumberOfTasksFailed": 0}  # every row queued; outcomes are the worker's

    progress, bars = wait_for_rows(stack, target, bulk_id, keys, "bulk/shop/")
    assert progress.counts == {"succeeded": ROWS - MISSING, "failed": MISSING}
    assert progress.errors == {"source_not_found": MISSING}
    assert bars[-1].startswith(f"[{'#' * 30}] {ROWS}/{ROWS}")

    records = [json.loads(s3.get_object(Bucket=r.output_bucket, Key=f"bulk/shop/{key}.json")["Body"].read())
               for key in keys]
    assert [rec["status"] for rec in records] == ["failed"] * MISSING + ["succeeded"] * (ROWS - MISSING)
    assert all(rec["operation"] == "remove-background" for rec in records[MISSING:])

    manifest_key, *results_keys = stack.batch_operations.report_keys(job_id)
    assert manifest_key.endswith(f"/job-{job_id}/manifest.json") and "/report/" in manifest_key
    assert len(results_keys) == 1  # every task succeeded: one results file
    report = read_report(s3, r.output_bucket, manifest_key)
    assert len(report) == ROWS and {row["TaskStatus"] for row in report} == {"succeeded"}
    assert report[0]["Key"] == "catalogue/shoe%2000.png" and report[0]["HTTPStatusCode"] == "200"

    # Our own final report, written by the worker once every row had its record: counts match.
    ours = final_report(stack, bulk_id)
    assert [row["key"] for row in ours] == keys
    assert [row["status"] for row in ours] == ["failed"] * MISSING + ["succeeded"] * (ROWS - MISSING)
    assert {row["error_code"] for row in ours[:MISSING]} == {"source_not_found"}
    assert ours[-1]["output_key"] == f"bulk/shop/{keys[-1]}.png"

    # The missing photos arrive: --retry-failed runs those rows only, as a new bulk job.
    for n, key in enumerate(keys[:MISSING]):
        s3.put_object(Bucket=r.input_bucket, Key=key, Body=png(n))
    out = io.StringIO()
    retry_id, retry_job = bulk.submit(target, manifest, {"operation": "remove-background"}, "bulk/shop/", out=out,
                                      retry_failed=True)
    assert f"{MISSING} rows, operation remove-background" in out.getvalue()
    assert wait_for_batch_job(stack, retry_job, 60)["ProgressSummary"]["TotalNumberOfTasks"] == MISSING
    retried, _ = wait_for_rows(stack, target, retry_id, keys[:MISSING], "bulk/shop/", ROWS_WAIT_S // 2)
    assert retried.counts == {"succeeded": MISSING}
    assert [row["status"] for row in final_report(stack, retry_id)] == ["succeeded"] * MISSING
    records = [json.loads(s3.get_object(Bucket=r.output_bucket, Key=f"bulk/shop/{key}.json")["Body"].read())
               for key in keys]
    assert {rec["status"] for rec in records} == {"succeeded"}
    with pytest.raises(bulk.BulkError, match="no failed rows"):
        bulk.submit(target, manifest, {"operation": "remove-background"}, "bulk/shop/", retry_failed=True)


def final_report(stack, bulk_id: str, wait_seconds: float = 60) -> list[dict]:
    """The bulk job's report.csv (docs/bulk.md), once the worker has written it (its own queue message)."""
    import csv
    import time

    s3, key = stack.client("s3"), core_bulk.report_key("bulk/shop/", bulk_id)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            body = s3.get_object(Bucket=stack.resources.output_bucket, Key=key)["Body"].read().decode()
            return list(csv.DictReader(io.StringIO(body)))
        except s3.exceptions.NoSuchKey:
            assert time.monotonic() < deadline, f"no report at {key}"
            time.sleep(0.5)


def test_refusals_come_before_anything_is_created(stack):
    target = bulk.stack_target(stack)
    r = stack.resources
    with pytest.raises(bulk.BulkError, match="not one this deployment may read"):
        bulk.submit(target, "someone-elses-bucket,a.png\n", {"operation": "remove-background"}, "bulk/x/")
    with pytest.raises(bulk.BulkError, match="invalid_parameters"):
        bulk.submit(target, f"{r.input_bucket},a.png\n", {"operation": "remove-background", "strength": 9},
                    "bulk/x/")
    rows = "".join(f"{r.input_bucket},k{n}.png\n" for n in range(20))
    with pytest.raises(bulk.BulkError, match=r"\$1.60 is above the ceiling \$1.00"):
        bulk.submit(target, rows, {"prompt": "a watercolor"}, "bulk/x/", max_cost=1.0, bulk_id="refused-1")
    assert target.progress.get("refused-1") is None
    listed = stack.client("s3").list_objects_v2(Bucket=r.output_bucket, Prefix="_bulk/refused-1/")
    assert listed.get("KeyCount", 0) == 0


def test_the_cli_submits_against_the_local_stacks_env_file_and_reports_status(stack, tmp_path, capsys):
    from img2img_local import cli

    s3, r = stack.client("s3"), stack.resources
    for n in range(3):
        s3.put_object(Bucket=r.input_bucket, Key=f"{CATALOGUE}cli/{n}.png", Body=png(n))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(core_bulk.encode_manifest((r.input_bucket, f"{CATALOGUE}cli/{n}.png", None)
                                                  for n in range(3)))
    env_file = tmp_path / "local.env"
    stack.write_env_file(env_file)
    context = ["-c", f'excludedPrefixes=["{CATALOGUE}"]']
    assert cli.main(["bulk", "submit", str(manifest), "--operation", "remove-background", "--output-prefix",
                     "bulk/cli/", "--watch", "--env-file", str(env_file), *context]) == 0
    printed = capsys.readouterr().out
    assert "3 rows, operation remove-background" in printed
    bulk_id = printed.split("bulk job ")[1].split()[0]
    assert cli.main(["bulk", "status", bulk_id, "--env-file", str(env_file), *context]) == 0
    assert "3/3  succeeded 3" in capsys.readouterr().out
    assert cli.main(["bulk", "submit", str(manifest), "--prompt", "a watercolor", "--output-prefix", "bulk/cli/",
                     "--max-cost", "0.1", "--env-file", str(env_file), *context]) == 1
    assert "above the ceiling $0.10" in capsys.readouterr().err


def test_a_jsonl_manifests_rows_override_the_bulk_jobs_params(stack):
    s3, r = stack.client("s3"), stack.resources
    keys = [f"{CATALOGUE}mixed/{n}.png" for n in range(4)]
    for n, key in enumerate(keys):
        s3.put_object(Bucket=r.input_bucket, Key=key, Body=png(n))
    lines = [{"bucket": r.input_bucket, "key": key} for key in keys]
    lines[1]["params"] = {"operation": "upscale-fast"}
    lines[2]["params"] = {"operation": "erase", "strength": 3}  # not a field of erase: refused up front
    target = bulk.stack_target(stack)
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    with pytest.raises(bulk.BulkError, match="line 3: invalid_parameters"):
        bulk.submit(target, text, {"operation": "remove-background"}, "bulk/mixed/", jsonl=True)
    del lines[2]["params"]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    bulk_id, job_id = bulk.submit(target, text, {"operation": "remove-background"}, "bulk/mixed/", jsonl=True,
                                  out=io.StringIO())
    stack.batch_operations.wait(job_id, timeout=60)
    assert bulk.watch(target, bulk_id, out=io.StringIO(), interval=0.5, timeout=120).counts == {"succeeded": 4}
    operations = [json.loads(s3.get_object(Bucket=r.output_bucket, Key=f"bulk/mixed/{key}.json")["Body"].read())
                  ["operation"] for key in keys]
    assert operations == ["remove-background", "upscale-fast", "remove-background", "remove-background"]
