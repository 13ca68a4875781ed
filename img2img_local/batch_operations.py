"""S3 Batch Operations' LambdaInvoke job, emulated against any S3 endpoint (moto locally: it has no Batch
Operations), the way event_source.py emulates Lambda's SQS event source.

It does what the service does for a `CreateJob` with a `LambdaInvoke` operation (schema 2.0) and a CSV
manifest (`S3BatchOperations_CSV_20180820`) or an S3 Inventory report (`S3InventoryReport_CSV_20161130`:
the manifest object is the report's manifest.json, whose gzipped CSV data files, in its destination
bucket, have the columns its fileSchema names):
- reads the manifest object (checking its ETag when one is given) and makes one task per row, the key
  passed on as written in the manifest (URL-encoded), an inventory's empty VersionId as `null`;
- invokes the function once per task, in a warm isolated sandbox (lambda_runtime), with the documented
  event: `{invocationSchemaVersion: "2.0", invocationId, job: {id, userArguments}, tasks: [{taskId,
  s3Key, s3VersionId, s3Bucket}]}`;
- reads each answer: `Succeeded` and `PermanentFailure` are final, `TemporaryFailure` (and a function
  error) is retried up to `max_attempts`, a task the answer leaves out is `treatMissingKeysAs`;
- writes the completion report (`Report_CSV_20180820`, scope AllTasks): one
  `<prefix>/job-<id>/results/<uuid>.csv` per task status, listed in `<prefix>/job-<id>/manifest.json`,
  and reports the job's status and progress as DescribeJob does.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import boto3

from img2img_local.event_source import FAKE_CREDENTIALS
from img2img_local.lambda_runtime import ExecutionEnvironment, FunctionSpec

log = logging.getLogger(__name__)

SCHEMA_VERSION = "2.0"
REPORT_FORMAT = "Report_CSV_20180820"
CSV_MANIFEST = "S3BatchOperations_CSV_20180820"
INVENTORY_MANIFEST = "S3InventoryReport_CSV_20161130"
REPORT_SCHEMA = "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage"
MAX_ATTEMPTS = 3
RESULT_CODES = ("Succeeded", "TemporaryFailure", "PermanentFailure")


@dataclass
class BatchJob:
    """One job as DescribeJob shows it (Status, ProgressSummary) plus what its report says."""

    job_id: str
    status: str = "Preparing"  # Preparing -> Active -> Complete | Failed
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    failure_reason: str = ""
    report_keys: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict:
        return {"JobId": self.job_id, "Status": self.status, "FailureReasons": (
            [{"FailureReason": self.failure_reason}] if self.failure_reason else []),
                "ProgressSummary": {"TotalNumberOfTasks": self.total, "NumberOfTasksSucceeded": self.succeeded,
                                    "NumberOfTasksFailed": self.failed}}


class BatchOperations:
    """`create_job(...)` starts a job in the background; `describe_job` and `wait` follow it."""

    def __init__(self, function: FunctionSpec, *, endpoint_url: str, max_attempts: int = MAX_ATTEMPTS):
        self.function = function
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        self._jobs: dict[str, BatchJob] = {}
        self._lock = threading.Lock()  # one sandbox: one invocation at a time
        self._environment = ExecutionEnvironment(function, instance_id=0)

    def create_job(self, *, manifest_bucket: str, manifest_key: str, user_arguments: dict[str, str],
                   report_bucket: str, report_prefix: str, manifest_etag: str | None = None,
                   manifest_format: str = CSV_MANIFEST) -> str:
        if manifest_format not in (CSV_MANIFEST, INVENTORY_MANIFEST):
            raise ValueError(f"unsupported manifest format {manifest_format!r}")  # CreateJob's validation
        job = BatchJob(str(uuid.uuid4()))
        self._jobs[job.job_id] = job
        threading.Thread(target=self._run, name=f"batch-job-{job.job_id[:8]}", daemon=True, args=(
            job, manifest_bucket, manifest_key, manifest_etag, user_arguments, report_bucket,
            report_prefix.rstrip("/"), manifest_format)).start()
        return job.job_id

    def describe_job(self, job_id: str) -> dict:
        return self._jobs[job_id].describe()

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        self._jobs[job_id].done.wait(timeout)
        return self.describe_job(job_id)

    def report_keys(self, job_id: str) -> list[str]:
        return list(self._jobs[job_id].report_keys)

    def close(self) -> None:
        self._environment.close()

    # ---- the job --------------------------------------------------------------------------------
    def _s3(self):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.function.region,
                            **FAKE_CREDENTIALS)

    def _run(self, job: BatchJob, bucket: str, key: str, etag: str | None, user_arguments: dict[str, str],
             report_bucket: str, report_prefix: str, manifest_format: str = CSV_MANIFEST) -> None:
        try:
            s3 = self._s3()
            obj = s3.get_object(Bucket=bucket, Key=key)
            if etag and obj["ETag"].strip('"') != etag.strip('"'):
                raise ValueError(f"the manifest's ETag is {obj['ETag']}, not {etag}")
            body = obj["Body"].read().decode("utf-8")
            rows = (_inventory_rows(s3, body) if manifest_format == INVENTORY_MANIFEST else
                    [r for r in csv.reader(io.StringIO(body)) if r and r != [""]])
            job.total, job.status = len(rows), "Active"
            outcomes = []
            for n, row in enumerate(rows):
                task = {"taskId": f"{job.job_id[:8]}-{n}", "s3Key": row[1] if len(row) > 1 else "",
                        "s3VersionId": row[2] if len(row) > 2 and row[2] else None, "s3Bucket": row[0]}
                status, code, message = self._task(job, task, user_arguments)
                if status == "succeeded":
                    job.succeeded += 1
                else:
                    job.failed += 1
                outcomes.append((row[0], task["s3Key"], task["s3VersionId"] or "", status, code, message))
            self._report(s3, job, report_bucket, report_prefix, outcomes)
            job.status = "Complete"
        except Exception as exc:  # the service fails the job and says why
            log.exception("batch job %s failed", job.job_id)
            job.status, job.failure_reason = "Failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.done.set()

    def _task(self, job: BatchJob, task: dict, user_arguments: dict[str, str]) -> tuple[str, str, str]:
        """(TaskStatus, result code, ResultMessage) after at most max_attempts invocations."""
        code, message = "TemporaryFailure", ""
        for _ in range(self.max_attempts):
            event = {"invocationSchemaVersion": SCHEMA_VERSION, "invocationId": str(uuid.uuid4()),
                     "job": {"id": job.job_id, "userArguments": dict(user_arguments)}, "tasks": [task]}
            with self._lock:
                result = self._environment.invoke(event)
            if result.outcome != "success":
                code, message = "TemporaryFailure", (result.error or {}).get("errorMessage", result.outcome)
                continue
            code, message = _answer_for(result.response, task["taskId"])
            if code != "TemporaryFailure":
                break
        return ("succeeded" if code == "Succeeded" else "failed"), code, message

    def _report(self, s3, job: BatchJob, bucket: str, prefix: str, outcomes: list[tuple]) -> None:
        """One results CSV per task status, listed in the report's manifest.json, as the service writes them."""
        base = f"{prefix}/job-{job.job_id}" if prefix else f"job-{job.job_id}"
        results = []
        for status in ("succeeded", "failed"):
            rows = [o for o in outcomes if o[3] == status]
            if not rows:
                continue
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            for row_bucket, raw_key, version, _, code, message in rows:
                # As the service writes them: the HTTP status, then the result code for a failure.
                writer.writerow([row_bucket, raw_key, version, status, 200 if status == "succeeded" else 400,
                                 "" if status == "succeeded" else code, message])
            key = f"{base}/results/{uuid.uuid4().hex}.csv"
            s3.put_object(Bucket=bucket, Key=key, Body=out.getvalue().encode("utf-8"), ContentType="text/csv")
            results.append({"TaskExecutionStatus": status, "Bucket": bucket, "Key": key})
        manifest = {"Format": REPORT_FORMAT, "ReportCreationDate": time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                                                   time.gmtime()),
                    "ReportSchema": REPORT_SCHEMA, "Results": results}
        s3.put_object(Bucket=bucket, Key=f"{base}/manifest.json", Body=json.dumps(manifest).encode(),
                      ContentType="application/json")
        job.report_keys = [f"{base}/manifest.json", *(r["Key"] for r in results)]


def _inventory_rows(s3, manifest_text: str) -> list[list[str]]:
    """`[bucket, key, version?]` per row of an inventory report's CSV data files, as the service reads
    them (the job fails on a report that is not CSV or whose schema has no Bucket and Key)."""
    manifest = json.loads(manifest_text)
    if manifest.get("fileFormat") != "CSV":
        raise ValueError(f"the inventory report is {manifest.get('fileFormat')}, not CSV")
    columns = [c.strip() for c in str(manifest.get("fileSchema") or "").split(",")]
    if "Bucket" not in columns or "Key" not in columns:
        raise ValueError(f"the inventory's fileSchema {manifest.get('fileSchema')!r} has no Bucket and Key")
    wanted = [columns.index(c) for c in ("Bucket", "Key", "VersionId") if c in columns]
    bucket = str(manifest.get("destinationBucket") or "").rsplit(":", 1)[-1]
    rows = []
    for data_file in manifest.get("files") or []:
        text = gzip.decompress(s3.get_object(Bucket=bucket, Key=data_file["key"])["Body"].read()).decode("utf-8")
        for row in csv.reader(io.StringIO(text)):
            if row and row != [""]:
                picked = [row[i] for i in wanted]
                rows.append(picked[:2] + [v or "null" for v in picked[2:]])
    return rows


def _answer_for(response, task_id: str) -> tuple[str, str]:
    """The task's result code and string in a function's answer; an unreadable answer is a failure."""
    if not isinstance(response, dict) or not isinstance(response.get("results"), list):
        return "PermanentFailure", "the function's answer has no results"
    for item in response["results"]:
        if isinstance(item, dict) and item.get("taskId") == task_id:
            code = item.get("resultCode")
            return (code if code in RESULT_CODES else "PermanentFailure"), str(item.get("resultString") or "")
    missing = response.get("treatMissingKeysAs") or "PermanentFailure"
    return (missing if missing in RESULT_CODES else "PermanentFailure"), "the answer left this task out"


def read_report(s3, bucket: str, manifest_key: str) -> list[dict[str, str]]:
    """A completion report's rows (every results file its manifest.json lists), by column name."""
    names = [n.strip() for n in REPORT_SCHEMA.split(",")]
    # The written order: Bucket, Key, VersionId, TaskStatus, HTTPStatusCode, ErrorCode, ResultMessage.
    written = names[:4] + [names[5], names[4], names[6]]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    rows = []
    for result in manifest["Results"]:
        text = s3.get_object(Bucket=result["Bucket"], Key=result["Key"])["Body"].read().decode("utf-8")
        rows += [dict(zip(written, row, strict=False)) for row in csv.reader(io.StringIO(text)) if row]
    return rows
