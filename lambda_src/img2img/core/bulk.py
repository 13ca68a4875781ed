"""Bulk jobs on S3 Batch Operations, the pure parts: the manifest, the job's arguments, the answers.

A bulk job is a manifest (CSV `bucket,key[,version]`, keys URL-encoded, as S3 Batch Operations reads it)
plus one set of job parameters. S3 Batch Operations invokes the enqueue function (handlers/bulk_enqueue.py)
once per row with invocation schema 2.0; the job's parameters travel in the job's `userArguments`
(string to string: at most 10 entries, keys of at most 64 characters, values of at most 1,024). The
function answers one result per task; every queued row then ends as one record, like any other job,
and the worker counts it on the bulk job's progress item. No boto3 here.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, unquote_plus

from ..operations import BY_NAME, IMAGE_TO_IMAGE, normal_name
from . import params as P
from .errors import JobError
from .triggers import BULK_REPORT, JOB_ID, JOB_MESSAGE, prefix_problem, valid_bucket_name

SCHEMA_VERSION = "2.0"
SUCCEEDED, TEMPORARY_FAILURE, PERMANENT_FAILURE = "Succeeded", "TemporaryFailure", "PermanentFailure"
# S3 Batch Operations: a task the response does not answer is treated as this.
TREAT_MISSING_KEYS_AS = PERMANENT_FAILURE
ORIGIN = "bulk"
# userArguments (the LambdaInvoke operation's limits)
ARG_BULK_ID, ARG_OUTPUT_PREFIX, ARG_PARAMS, ARG_OVERRIDES = "bulkId", "outputPrefix", "params", "overrides"
ARGUMENTS = (ARG_BULK_ID, ARG_OUTPUT_PREFIX, ARG_PARAMS, ARG_OVERRIDES)
MAX_ARGUMENT_CHARS = 1024
MAX_RESULT_STRING_CHARS = 1024
MAX_MANIFEST_ROWS = 100_000   # one submit's guard; S3 Batch Operations itself takes billions
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a manifest named by its S3 location (API, event): read whole, so bounded
# EventBridge (docs/events.md): a bulk job asked for on the pipeline's bus, and its answer there.
SUBMIT_EVENT, SUBMITTED_EVENT, REFUSED_EVENT = "SubmitBulkJob", "BulkJobSubmitted", "BulkJobRefused"
SUBMIT_FIELDS = ("manifest", "params", "operation", "output_prefix", "acknowledgeCost", "request_id")
EVENTS_NAMESPACE = "events/"  # an event's bulk outputs, as ImageGenerationRequested's (core/triggers.py)
MAX_REPORTED_PROBLEMS = 20
# Under the output prefix, in the output bucket: each bulk job's manifest and its completion report (the
# Batch Operations role may read only the manifests and write only there: infra/bulk.py).
BULK_DIR = "_bulk"
MANIFEST_NAME = "manifest.csv"
OVERRIDES_NAME = "overrides.json"  # a JSONL manifest's per-row params, by row (S3 reads only the CSV)
REPORT_DIR = "report"
# Counter item statuses: the worker's record statuses, plus rows the enqueue function refused.
RECORD_STATUSES = ("succeeded", "failed")
REJECTED = "rejected"
# Model prices per output image, USD, at the time of writing (SD3.5 Large: docs/deploy.md; the Image
# Services: a third-party catalog, unverified, ../shared/reference/stability-image-services.md).
PRICE_PER_IMAGE_USD = {IMAGE_TO_IMAGE: 0.08, "upscale-creative": 0.14}
DEFAULT_SERVICE_PRICE_USD = 0.04


class ManifestError(ValueError):
    """A manifest S3 Batch Operations (or this deployment) would refuse: each problem with its line."""

    def __init__(self, problems: list[str], total: int):
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = f" (and {total - len(shown)} more)" if total > len(shown) else ""
        super().__init__("invalid manifest: " + "; ".join(shown) + more)
        self.problems = problems


@dataclass(frozen=True)
class ManifestRow:
    line: int
    bucket: str
    key: str                # decoded
    version_id: str | None
    raw_key: str            # as written in the manifest (URL-encoded): what a task's s3Key carries
    params: dict[str, Any] | None = None  # a JSONL row's overrides of the bulk job's params


def parse_jsonl_manifest(text: str, readable: Callable[[str], bool] = lambda bucket: True,
                         max_rows: int = MAX_MANIFEST_ROWS) -> list[ManifestRow]:
    """A JSONL manifest: one `{"bucket", "key" (not encoded), "version_id"?, "params"?}` per line."""
    rows: list[ManifestRow] = []
    problems: list[str] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            problems.append(f"line {line}: not JSON")
            continue
        if not isinstance(item, dict) or set(item) - {"bucket", "key", "version_id", "params"}:
            problems.append(f"line {line}: a row is {{bucket, key, version_id?, params?}}")
            continue
        bucket, key, version, params = (item.get(n) for n in ("bucket", "key", "version_id", "params"))
        if not isinstance(key, str) or not isinstance(bucket, str):
            problems.append(f"line {line}: bucket and key must be strings")
        elif params is not None and not isinstance(params, dict):
            problems.append(f"line {line}: params must be a JSON object")
        elif version is not None and not (isinstance(version, str) and version):
            problems.append(f"line {line}: version_id must be a non-empty string")
        else:
            problem, row = _row(line, [bucket, quote(key, safe="/"), *([version] if version else [])])
            if row is not None and not readable(row.bucket):
                problem = f"line {line}: bucket {row.bucket!r} is not one this deployment may read"
            if problem:
                problems.append(problem)
            elif row is not None:
                rows.append(replace(row, params=params or None))
    return _checked_rows(rows, problems, max_rows)


def parse_manifest(text: str, readable: Callable[[str], bool] = lambda bucket: True,
                   max_rows: int = MAX_MANIFEST_ROWS) -> list[ManifestRow]:
    """A CSV manifest's rows (`bucket,key[,version]`, keys URL-encoded), or ManifestError naming every
    bad line: a bucket this deployment may not read, a row that is not 2 or 3 fields, a bad key."""
    rows: list[ManifestRow] = []
    problems: list[str] = []
    for line, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or fields == [""]:
            continue
        problem, row = _row(line, fields)
        if row is not None and not readable(row.bucket):
            problem = f"line {line}: bucket {row.bucket!r} is not one this deployment may read"
        if problem:
            problems.append(problem)
        elif row is not None:
            rows.append(row)
    return _checked_rows(rows, problems, max_rows)


def _checked_rows(rows: list[ManifestRow], problems: list[str], max_rows: int) -> list[ManifestRow]:
    if not rows and not problems:
        problems.append("the manifest has no rows")
    first: dict[tuple[str, str, str | None], int] = {}
    for row in rows:  # a repeated object would be counted twice on a job that then never finishes
        seen = first.setdefault((row.bucket, row.key, row.version_id), row.line)
        if seen != row.line:
            problems.append(f"line {row.line}: the same object as line {seen} ({row.bucket}/{row.key}); "
                            "name each object once")
    if len({row.version_id is None for row in rows}) > 1:  # one field list for the whole manifest
        problems.append("some rows have a version and some do not: give every row a version, or none")
    if len(rows) + len(problems) > max_rows:
        problems.insert(0, f"{len(rows) + len(problems):,} rows; at most {max_rows:,} per bulk job")
    if problems:
        raise ManifestError(problems, len(problems))
    return rows


def manifest_key(output_prefix: str, bulk_id: str) -> str:
    return f"{output_prefix}{BULK_DIR}/{bulk_id}/{MANIFEST_NAME}"


def overrides_key(output_prefix: str, bulk_id: str) -> str:
    return f"{output_prefix}{BULK_DIR}/{bulk_id}/{OVERRIDES_NAME}"


def row_id(bucket: str, key: str, version_id: str | None) -> str:
    """A row's name in the overrides document (what a task names: bucket, decoded key, version)."""
    return json.dumps([bucket, key, version_id or None], ensure_ascii=False)


def overrides_document(rows: Iterable[ManifestRow]) -> dict[str, dict[str, Any]]:
    return {row_id(r.bucket, r.key, r.version_id): r.params for r in rows if r.params}


def report_prefix(output_prefix: str, bulk_id: str) -> str:
    return f"{output_prefix}{BULK_DIR}/{bulk_id}/{REPORT_DIR}"


def manifest_fields(rows: list[ManifestRow]) -> list[str]:
    """The manifest's `Spec.Fields` for S3 Batch Operations."""
    return ["Bucket", "Key", "VersionId"] if rows and rows[0].version_id else ["Bucket", "Key"]


def _row(line: int, fields: list[str]) -> tuple[str | None, ManifestRow | None]:
    if len(fields) not in (2, 3):
        return f"line {line}: {len(fields)} fields; a row is bucket,key[,version]", None
    bucket, raw_key = fields[0].strip(), fields[1]
    version = fields[2].strip() if len(fields) == 3 and fields[2].strip() else None
    if not valid_bucket_name(bucket):
        return f"line {line}: {bucket!r} is not a bucket name", None
    key = decode_key(raw_key)
    if not key:
        return f"line {line}: the key is empty", None
    if len(key.encode("utf-8", "surrogatepass")) > 1024:
        return f"line {line}: the key is longer than 1,024 UTF-8 bytes", None
    return None, ManifestRow(line, bucket, key, version, raw_key)


def decode_key(raw_key: str) -> str:
    """A manifest's (and so a task's) URL-encoded key, decoded once."""
    return unquote_plus(raw_key, encoding="utf-8")


def encode_manifest(rows: Iterable[tuple[str, str, str | None]]) -> str:
    """(bucket, key, version) -> CSV manifest text, keys URL-encoded as S3 Batch Operations expects."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for bucket, key, version in rows:
        writer.writerow([bucket, quote(key, safe="/"), *([version] if version else [])])
    return out.getvalue()


# ---- the job's arguments ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BulkArguments:
    bulk_id: str
    output_prefix: str
    params: dict[str, Any] = field(default_factory=dict)
    overrides: str = ""  # the output-bucket key of the per-row overrides (JSONL manifests), if any

    def user_arguments(self) -> dict[str, str]:
        """What the LambdaInvoke operation carries (checked against its limits)."""
        args = {ARG_BULK_ID: self.bulk_id, ARG_OUTPUT_PREFIX: self.output_prefix,
                ARG_PARAMS: json.dumps(self.params, separators=(",", ":"), ensure_ascii=False),
                **({ARG_OVERRIDES: self.overrides} if self.overrides else {})}
        parse_arguments(args)
        return args

    def job_message(self, bucket: str, key: str, version_id: str | None,
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The job message the worker runs for one row (core/triggers.py parses it): the bulk job's
        params, field by field overridden by the row's own."""
        return {"type": JOB_MESSAGE, "origin": ORIGIN, "bulk_id": self.bulk_id,
                "source": {"bucket": bucket, "key": key, "version_id": version_id},
                "params": {**self.params, **(overrides or {})}, "output": {"prefix": self.output_prefix}}


def parse_arguments(args: Any) -> BulkArguments:
    """userArguments -> BulkArguments, or a permanent invalid_parameters JobError."""
    if not isinstance(args, dict):
        raise _invalid("userArguments must be an object of strings")
    problems = [f"{name} is not a bulk job argument (allowed: {', '.join(ARGUMENTS)})"
                for name in args if name not in ARGUMENTS]
    for name, value in args.items():
        if not isinstance(value, str):
            problems.append(f"{name} must be a string")
        elif len(value) > MAX_ARGUMENT_CHARS:
            problems.append(f"{name} is {len(value):,} characters; S3 Batch Operations carries at most "
                            f"{MAX_ARGUMENT_CHARS:,} per argument (shorten the prompt)")
    bulk_id, prefix, params_text, overrides = (args.get(name) for name in ARGUMENTS)
    if not (isinstance(bulk_id, str) and JOB_ID.fullmatch(bulk_id)):
        problems.append(f"{ARG_BULK_ID} is not a valid bulk job id")
    if not isinstance(prefix, str) or not prefix:
        problems.append(f"{ARG_OUTPUT_PREFIX} is required")
    elif prefix_problem(prefix):
        problems.append(f"{ARG_OUTPUT_PREFIX} {prefix_problem(prefix)}")
    params: Any = {}
    if isinstance(params_text, str) and params_text:
        try:
            params = json.loads(params_text)
        except ValueError:
            problems.append(f"{ARG_PARAMS} is not JSON")
        if not isinstance(params, dict):
            problems.append(f"{ARG_PARAMS} must be a JSON object (docs/parameters.md)")
    if overrides is not None and (not isinstance(overrides, str) or prefix_problem(overrides)):
        problems.append(f"{ARG_OVERRIDES} is not an object key")
    if problems:
        raise _invalid("; ".join(problems))
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    return BulkArguments(bulk_id, prefix, params, overrides or "")


def _invalid(message: str) -> JobError:
    return JobError("invalid_parameters", f"invalid bulk job arguments: {message}")


def check_params(params: dict[str, Any], deployment: P.Layer, validate: Callable[[P.MergedParams], Any]) -> str:
    """Validate a bulk job's parameters as every job's are (deployment defaults < these), before any row
    runs; the operation they ask for. `validate` is Pipeline.validate (raises JobError)."""
    merged = P.merge([deployment, P.request_layer(params, "bulk job params")])
    if not merged.has_prompt:
        try:  # operations without a prompt (remove-background, upscale-fast...) validate as they are
            validate(merged)
            return operation_of(merged)
        except JobError as exc:
            if exc.code != "missing_parameters":
                raise
        # A prompt may still come from a row's folder _defaults.json or sidecar.
        merged.positive = [{"text": "stand-in", "weight": 1.0}]
    validate(merged)
    return operation_of(merged)


def operation_of(merged: P.MergedParams) -> str:
    value = merged.values.get("operation")
    return normal_name(value) if isinstance(value, str) else IMAGE_TO_IMAGE


def estimated_cost(rows: int, operation: str) -> float:
    """USD for `rows` model calls of `operation` (one output image each)."""
    if operation == IMAGE_TO_IMAGE or operation not in BY_NAME:
        price = PRICE_PER_IMAGE_USD[IMAGE_TO_IMAGE]
    else:
        price = PRICE_PER_IMAGE_USD.get(operation, DEFAULT_SERVICE_PRICE_USD)
    return round(rows * price, 2)


# ---- the Batch Operations event and answer ------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    task_id: str
    bucket: str
    key: str                 # decoded
    version_id: str | None


def tasks_of(event: Any) -> tuple[list[Task], list[dict[str, str]]]:
    """The event's readable tasks, and PermanentFailure results for the ones that name no object."""
    tasks: list[Task] = []
    failed: list[dict[str, str]] = []
    for i, raw in enumerate((event.get("tasks") or []) if isinstance(event, dict) else []):
        task = raw if isinstance(raw, dict) else {}
        task_id = str(task.get("taskId") or f"task-{i}")
        bucket, raw_key = task.get("s3Bucket"), task.get("s3Key")
        if not isinstance(bucket, str) or not bucket or not isinstance(raw_key, str) or not raw_key:
            failed.append(result(task_id, PERMANENT_FAILURE, "the task names no s3Bucket and s3Key"))
            continue
        version = task.get("s3VersionId")
        tasks.append(Task(task_id, bucket, decode_key(raw_key), version if isinstance(version, str) and version
                          else None))
    return tasks, failed


def result(task_id: str, code: str, message: str) -> dict[str, str]:
    return {"taskId": task_id, "resultCode": code, "resultString": message[:MAX_RESULT_STRING_CHARS]}


def response(event: Any, results: list[dict[str, str]]) -> dict[str, Any]:
    """The answer S3 Batch Operations reads (schema 2.0)."""
    invocation_id = event.get("invocationId") if isinstance(event, dict) else None
    return {"invocationSchemaVersion": SCHEMA_VERSION, "treatMissingKeysAs": TREAT_MISSING_KEYS_AS,
            "invocationId": invocation_id, "results": results}


def result_for(error: JobError) -> tuple[str, str]:
    """A fault's result code: transient ones are retried by S3 Batch Operations, the rest are final."""
    return (TEMPORARY_FAILURE if error.retryable else PERMANENT_FAILURE), f"{error.code}: {error.message}"


# ---- progress -----------------------------------------------------------------------------------------

_COUNT = re.compile(r"[a-z][a-z0-9_]{0,63}")


def counter_names(status: str, error_code: str | None) -> list[str]:
    """The counter attributes one outcome adds 1 to: its status, and its error code if any."""
    names = [f"n_{status}"]
    if error_code and _COUNT.fullmatch(error_code):
        names.append(f"e_{error_code}")
    return names


@dataclass(frozen=True)
class Progress:
    bulk_id: str
    total: int
    counts: dict[str, int]          # status -> rows
    errors: dict[str, int]          # error code -> rows
    definition: dict[str, Any]
    completed_at: str | None = None  # set once, when the final report is written (BulkJobCompleted)
    report_requested: bool = False
    batch_job_id: str | None = None  # set once S3 Batch Operations created the job (None: not started yet)

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.done >= self.total


def progress_of(bulk_id: str, counters: dict[str, int], definition: dict[str, Any],
                completed_at: str | None = None, report_requested: bool = False,
                batch_job_id: str | None = None) -> Progress:
    counts = {name[2:]: n for name, n in counters.items() if name.startswith("n_")}
    errors = {name[2:]: n for name, n in counters.items() if name.startswith("e_")}
    return Progress(bulk_id, int(definition.get("rows") or 0), counts, errors, definition, completed_at,
                    report_requested, batch_job_id)


def progress_bar(progress: Progress, width: int = 30) -> str:
    """`[#########.....] 30/50 succeeded 28 failed 2 (source_not_found 2)`."""
    total = max(progress.total, 1)
    filled = min(width, round(width * progress.done / total))
    counts = " ".join(f"{status} {n}" for status, n in sorted(progress.counts.items()))
    errors = ", ".join(f"{code} {n}" for code, n in sorted(progress.errors.items()))
    return (f"[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total}"
            + (f"  {counts}" if counts else "") + (f"  ({errors})" if errors else ""))


def observed_rate(done: int, elapsed_seconds: float) -> float:
    """Rows per minute so far."""
    return done / max(elapsed_seconds, 1e-6) * 60 if done > 0 else 0.0


def eta_seconds(remaining: int, quota_rpm: float | None, observed_rpm: float) -> int | None:
    """Seconds until every row has its record: the rows left at the model's configured requests per minute
    (`modelQuotas`: the limiter paces the worker to it, so it is the rate the rows will run at), else at the
    rate observed so far; None before there is any rate (nothing done yet, no quota), 0 when done."""
    if remaining <= 0:
        return 0
    rate = quota_rpm if quota_rpm and quota_rpm > 0 else observed_rpm
    if not rate or rate <= 0:
        return None
    return math.ceil(remaining / rate * 60)


def event_bulk_id(event_id: str) -> str:
    """The bulk id of a SubmitBulkJob event: from its EventBridge id, so a redelivered event is the same
    bulk job (and the same S3 Batch Operations ClientRequestToken), never a second one."""
    return "bulk-ev-" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:24]


def submit_detail_problems(detail: Any) -> list[str]:
    """What is wrong with a SubmitBulkJob detail's shape (its values are checked by the submit itself)."""
    if not isinstance(detail, dict):
        return ["the detail must be an object"]
    problems = [f"{name} is not a field of {SUBMIT_EVENT} (allowed: {', '.join(SUBMIT_FIELDS)})"
                for name in detail if name not in SUBMIT_FIELDS]
    for name in ("manifest", "output_prefix"):
        if not isinstance(detail.get(name), str) or not detail.get(name):
            problems.append(f"{name} is required (a string)")
    if detail.get("params") is not None and not isinstance(detail["params"], dict):
        problems.append("params must be an object")
    if detail.get("operation") is not None and not isinstance(detail["operation"], str):
        problems.append("operation must be a string")
    if not isinstance(detail.get("acknowledgeCost", False), bool):
        problems.append("acknowledgeCost must be true or false")
    request_id = detail.get("request_id")
    if request_id is not None and not (isinstance(request_id, str) and JOB_ID.fullmatch(request_id)):
        problems.append("request_id must be 1 to 128 letters, digits, '_', '.', '-', starting with a letter or digit")
    return problems


# ---- S3 Inventory reports as manifests ----------------------------------------------------------------

INVENTORY_FORMAT = "S3InventoryReport_CSV_20161130"   # the Manifest Spec S3 Batch Operations reads
CSV_FORMAT = "S3BatchOperations_CSV_20180820"
INVENTORY_MANIFEST_NAME = "manifest.json"
INVENTORY_FILE_FORMATS = ("CSV", "ORC", "Parquet")   # what S3 Inventory writes; Batch Operations reads CSV
_NULL_VERSION = "null"                                # what Batch Operations reads as a null version id


def is_inventory_manifest(key: str) -> bool:
    """An S3 Inventory report is named by its `manifest.json` (the data files are listed inside)."""
    return key.rsplit("/", 1)[-1] == INVENTORY_MANIFEST_NAME


@dataclass(frozen=True)
class InventoryManifest:
    """An S3 Inventory report's manifest.json: where its gzipped CSV data files are and their columns."""
    source_bucket: str
    destination_bucket: str     # the bucket the data files are in (from the manifest's ARN)
    columns: tuple[str, ...]    # fileSchema, in order
    files: tuple[str, ...]      # data file keys, in the destination bucket


def parse_inventory_manifest(text: str) -> InventoryManifest:
    """manifest.json -> InventoryManifest, or ManifestError saying what S3 Batch Operations would refuse:
    a format other than CSV (ORC and Parquet inventories are named as such), a fileSchema without Bucket
    and Key, no data files."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise ManifestError(["manifest.json is not JSON"], 1) from None
    if not isinstance(doc, dict):
        raise ManifestError(["manifest.json is not an S3 Inventory manifest (a JSON object)"], 1)
    problems: list[str] = []
    file_format = doc.get("fileFormat")
    if file_format != "CSV":
        known = file_format if file_format in INVENTORY_FILE_FORMATS else repr(file_format)
        problems.append(f"the inventory is {known}; S3 Batch Operations reads CSV inventory reports only "
                        f"({INVENTORY_FORMAT}): configure a CSV inventory")
    schema = doc.get("fileSchema")
    columns = tuple(c.strip() for c in schema.split(",")) if isinstance(schema, str) else ()
    if file_format == "CSV" and not {"Bucket", "Key"} <= set(columns):
        problems.append(f"the fileSchema {schema!r} has no Bucket and Key columns")
    files = doc.get("files")
    keys = tuple(f.get("key") for f in files if isinstance(f, dict)) if isinstance(files, list) else ()
    if not keys or not all(isinstance(k, str) and k for k in keys):
        problems.append("the manifest lists no data files (files[].key)")
    destination = doc.get("destinationBucket")
    destination = destination.rsplit(":", 1)[-1] if isinstance(destination, str) else ""
    if problems:
        raise ManifestError(problems, len(problems))
    return InventoryManifest(str(doc.get("sourceBucket") or ""), destination, columns, keys)


def parse_inventory(manifest: InventoryManifest, data: Callable[[str], bytes],
                    readable: Callable[[str], bool] = lambda bucket: True,
                    max_rows: int = MAX_MANIFEST_ROWS) -> list[ManifestRow]:
    """An inventory's rows from its data files (`data(key)` -> the gzipped CSV's bytes), in file order:
    the same ManifestRows a CSV manifest gives (keys URL-encoded in the files, as in a CSV manifest).
    A versioned inventory gives every row its VersionId; an empty one (a null-versioned object in an
    all-versions report) is written `null`, which is what Batch Operations reads."""
    at = {name: manifest.columns.index(name) for name in ("Bucket", "Key", "VersionId") if name in manifest.columns}
    rows: list[ManifestRow] = []
    problems: list[str] = []
    line = 0
    for file_key in manifest.files:
        try:
            text = gzip.decompress(data(file_key)).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            problems.append(f"{file_key}: not a gzipped UTF-8 CSV ({type(exc).__name__})")
            continue
        for n, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not fields or fields == [""]:
                continue
            line += 1
            if len(fields) != len(manifest.columns):
                problems.append(f"{file_key} line {n}: {len(fields)} fields; the fileSchema has "
                                f"{len(manifest.columns)}")
                continue
            version = [fields[at["VersionId"]] or _NULL_VERSION] if "VersionId" in at else []
            problem, row = _row(line, [fields[at["Bucket"]], fields[at["Key"]], *version])
            if row is not None and not readable(row.bucket):
                problem = f"line {line}: bucket {row.bucket!r} is not one this deployment may read"
            if problem:
                problems.append(f"{file_key} {problem}")
            elif row is not None:
                rows.append(row)
    return _checked_rows(rows, problems, max_rows)


def manifest_spec(rows: list[ManifestRow], inventory: bool) -> dict[str, Any]:
    """The CreateJob `Manifest.Spec` for the manifest object: an inventory's manifest.json carries its
    own columns; a CSV manifest names them."""
    return {"Format": INVENTORY_FORMAT} if inventory else {"Format": CSV_FORMAT, "Fields": manifest_fields(rows)}


# ---- the final report and BulkJobCompleted -----------------------------------------------------------
# Each row's outcome is stored, when its record is written (or the enqueue function refuses it), as one
# item `bulk#<bulk_id>#<row digest>` beside the counter item, in the same transaction as the counters'
# ADD and only if that item does not exist yet: a row is counted once however often its message comes
# back. When the counters reach the manifest's rows, the report is built from the manifest (its rows, in
# order) and those items (BatchGetItem, 100 a call): no listing of the output bucket, no scan.

REPORT_REQUEST = BULK_REPORT   # the job-queue message that makes the worker write the report
COMPLETED_EVENT = "BulkJobCompleted"
REPORT_NAME = "report.csv"
REPORT_COLUMNS = ("bucket", "key", "version_id", "status", "error_code", "output_key", "record_key")
NO_OUTCOME = "missing"   # a manifest row without an outcome item (only if an item was lost)


def report_key(output_prefix: str, bulk_id: str) -> str:
    """Our final report: beside the manifest, outside `report/` (S3 Batch Operations' own report)."""
    return f"{output_prefix}{BULK_DIR}/{bulk_id}/{REPORT_NAME}"


def row_digest(bucket: str, key: str, version_id: str | None) -> str:
    """A row's outcome item's name (bucket, decoded key, version: what a task names and a manifest lists)."""
    return hashlib.sha256(row_id(bucket, key, version_id).encode("utf-8", "surrogatepass")).hexdigest()[:40]


def outcome_line(bucket: str, key: str, version_id: str | None, status: str, error_code: str | None,
                 output_key: str | None = None, record_key: str | None = None) -> dict[str, Any]:
    """One row's line of the report, as its outcome item stores it."""
    return {"bucket": bucket, "key": key, "version_id": version_id, "status": status,
            "error_code": error_code, "output_key": output_key, "record_key": record_key}


def line_of_record(record: dict[str, Any], bucket: str, key: str, version_id: str | None) -> dict[str, Any]:
    """A worker record's report line: its status, error code, first output and the record's own key."""
    outputs = record.get("outputs") or []
    return outcome_line(bucket, key, version_id, str(record.get("status")), (record.get("error") or {}).get("code"),
                        outputs[0].get("key") if outputs else None, (record.get("record") or {}).get("key"))


def report_csv(rows: Iterable[ManifestRow], lines: dict[str, dict[str, Any]]) -> bytes:
    """The report (CSV with a header, keys as they are, manifest order): every manifest row once."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    seen: set[str] = set()
    for row in rows:
        digest = row_digest(row.bucket, row.key, row.version_id)
        if digest in seen:
            continue
        seen.add(digest)
        line = lines.get(digest) or outcome_line(row.bucket, row.key, row.version_id, NO_OUTCOME, None)
        writer.writerow(["" if line.get(c) is None else line[c] for c in REPORT_COLUMNS])
    return out.getvalue().encode("utf-8")


def manifest_location(definition: dict[str, Any], output_bucket: str, bulk_id: str) -> tuple[str, str, str]:
    """(bucket, key, format) of the manifest a bulk job ran: `definition.manifest` when submit wrote one
    (an inventory's manifest.json), else the CSV manifest submit writes beside the report."""
    named = definition.get("manifest")
    if isinstance(named, dict) and named.get("bucket") and named.get("key"):
        return str(named["bucket"]), str(named["key"]), str(named.get("format") or CSV_FORMAT)
    return output_bucket, manifest_key(str(definition.get("output_prefix") or ""), bulk_id), CSV_FORMAT


def completed_detail(progress: Progress, report_bucket: str, report_key_: str, completed_at: str) -> dict[str, Any]:
    """The BulkJobCompleted detail (docs/events/BulkJobCompleted.schema.json)."""
    return {"bulk_id": progress.bulk_id, "rows": progress.total,
            "counts": {status: progress.counts.get(status, 0) for status in (*RECORD_STATUSES, REJECTED)},
            "errors": dict(sorted(progress.errors.items())),
            "report": {"bucket": report_bucket, "key": report_key_},
            "output_prefix": progress.definition.get("output_prefix"), "completed_at": completed_at}


def report_request(bulk_id: str) -> dict[str, str]:
    return {"type": REPORT_REQUEST, "bulk_id": bulk_id}


def manifest_rows(store: Any, definition: dict[str, Any], output_bucket: str, bulk_id: str) -> list[ManifestRow]:
    """The rows of the manifest a bulk job ran, read again for its report (`store`: the ObjectStore port).
    JobError if it is gone (permanent: the report cannot be written without it)."""
    bucket, key, spec = manifest_location(definition, output_bucket, bulk_id)

    def read(bucket_: str, key_: str) -> bytes:
        found = store.get(bucket_, key_)
        if found is None:
            raise JobError("source_not_found", f"the bulk job's manifest s3://{bucket_}/{key_} is gone")
        return found[0]

    text = read(bucket, key).decode("utf-8")
    unbounded = 10 ** 9  # submit bounded it; the report lists what ran
    if spec == INVENTORY_FORMAT:
        inventory = parse_inventory_manifest(text)
        return parse_inventory(inventory, lambda k: read(inventory.destination_bucket, k), max_rows=unbounded)
    return parse_manifest(text, max_rows=unbounded)


def write_report(progress: Any, store: Any, bulk_id: str, output_bucket: str, publish: Callable[[dict], None],
                 log_exception: Callable[..., None], now: str) -> bool:
    """The report of a finished bulk job, then (exactly once: a conditional write) BulkJobCompleted. A
    fault writing it raises (transient: the report message comes back); a failed publish is logged.
    False when there is nothing to do (not finished, or completed already)."""
    state = progress.get(bulk_id)
    if state is None or not state.finished or state.completed_at:
        return False
    rows = manifest_rows(store, state.definition, output_bucket, bulk_id)
    lines = progress.lines(bulk_id, [row_digest(r.bucket, r.key, r.version_id) for r in rows])
    key = report_key(str(state.definition.get("output_prefix") or ""), bulk_id)
    store.put(output_bucket, key, report_csv(rows, lines), "text/csv", {"bulk-id": bulk_id})
    if not progress.complete(bulk_id, key, now):
        return False  # another delivery of the report message completed it first
    try:
        publish(completed_detail(state, output_bucket, key, now))
    except Exception:  # the report is the outcome; the event is a notification about it
        log_exception("could not publish BulkJobCompleted", bulk_id=bulk_id)
    return True


def request_report_if_finished(progress: Any, state: Progress | None, send: Callable[[dict], None]) -> bool:
    """After a row is counted: the one caller that sees the bulk job finished and wins the claim sends the
    report message (the job queue's retries and DLQ then stand behind the report). A send that fails
    gives the claim back and raises, so the row's own retry claims it again (its count is not repeated)."""
    if state is None or not state.finished or state.completed_at or state.report_requested:
        return False
    if not progress.request_report(state.bulk_id):
        return False
    try:
        send(report_request(state.bulk_id))
    except Exception:
        progress.release_report(state.bulk_id)
        raise
    return True
