"""Submitting a bulk job (docs/bulk.md): the one path the CLI, POST /v1/bulk-jobs and `SubmitBulkJob` share.

Everything is checked before anything is created: the manifest (format, rows, every bucket one this
deployment may read), the parameters (the same validation as every job, a JSONL row's too), S3 Batch
Operations' argument limits, the estimated model cost against the ceiling unless acknowledged. Then the
CSV manifest (and a JSONL manifest's per-row overrides) is stored under `<outputPrefix>_bulk/<bulk_id>/`,
the progress item written, and the Batch Operations job created. Where the job runs is a `Target`: on
AWS `aws_target` (S3 Batch Operations), in the local stack its emulation (img2img_local/bulk.py).
"""
from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .aws.bulk import DynamoBulkProgress, create_batch_job
from .core import bulk, records
from .core import params as P
from .core.errors import JobError, transient
from .core.pipeline import Pipeline
from .core.triggers import prefix_problem
from .models.registry import adapter_for
from .settings import Settings

ALLOWED_PREFIX = "a relative key prefix: no leading '/', no '.' or '..' segments, no control characters"


class BulkRefused(Exception):
    """A bulk job refused before anything was created: an error code (core/errors.py) and why."""

    def __init__(self, message: str, code: str = "invalid_parameters"):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Target:
    """Where a bulk job runs: the deployment's settings, its S3 and progress items, its Batch Operations."""

    settings: Settings
    s3: Any
    progress: DynamoBulkProgress
    # (arguments, manifest key, manifest ETag, manifest fields, report prefix) -> the Batch Operations job id
    start_job: Callable[[bulk.BulkArguments, str, str, list[str], str], str]
    operations: Any = None  # the emulated S3 Batch Operations (local), None on AWS


@dataclass(frozen=True)
class Submitted:
    bulk_id: str
    batch_job_id: str
    rows: int
    operation: str
    estimated_cost_usd: float
    output_prefix: str
    output_bucket: str


def new_bulk_id(clock: Callable[[], float] = time.time) -> str:
    return time.strftime("bulk-%Y%m%d-%H%M%S", time.gmtime(clock())) + "-" + secrets.token_hex(3)


def plan(target: Target, manifest_text: str, params: dict[str, Any], output_prefix: str,
         bulk_id: str | None = None, jsonl: bool = False,
         ) -> tuple[bulk.BulkArguments, list[bulk.ManifestRow], str, float]:
    """Everything checked, nothing created: (arguments, rows, operation, estimated cost in USD).

    A JSONL manifest's rows may override the parameters: each row's are validated too."""
    s = target.settings
    try:
        rows = (bulk.parse_jsonl_manifest if jsonl else bulk.parse_manifest)(manifest_text, s.bulk_readable)
    except bulk.ManifestError as exc:
        raise BulkRefused(str(exc), "invalid_manifest") from None
    if not isinstance(params, dict):
        raise BulkRefused("invalid_parameters: params must be a JSON object (docs/parameters.md)")
    deployment = P.deployment_layer(s.model_id, s.output_format, s.default_prompt, s.default_params)
    validator = Pipeline(s, store=None, model=None, registry=adapter_for)
    try:
        operation = bulk.check_params(params, deployment, validator.validate)
        checked = bulk.parse_arguments({bulk.ARG_BULK_ID: bulk_id or new_bulk_id(),
                                        bulk.ARG_OUTPUT_PREFIX: s.output_prefix + output_prefix})
        arguments = bulk.BulkArguments(checked.bulk_id, checked.output_prefix, params)
        arguments.user_arguments()  # within S3 Batch Operations' limits
    except JobError as exc:
        raise BulkRefused(f"{exc.code}: {exc.message}", exc.code) from None
    operations: dict[str, int] = {}
    problems = []
    for row in rows:
        try:
            op = bulk.check_params({**params, **row.params}, deployment, validator.validate) if row.params \
                else operation
        except JobError as exc:
            problems.append(f"line {row.line}: {exc.code}: {exc.message}")
            continue
        operations[op] = operations.get(op, 0) + 1
    if problems:
        raise BulkRefused(str(bulk.ManifestError(problems, len(problems))))
    cost = round(sum(bulk.estimated_cost(n, op) for op, n in operations.items()), 2)
    return arguments, rows, operation, cost


def failed_rows(target: Target, rows: list[bulk.ManifestRow], output_prefix: str) -> list[bulk.ManifestRow]:
    """The rows whose record (under the bulk job's output prefix) says `failed`: what --retry-failed re-runs.
    One GET per row; rows that succeeded, or have no record yet, are left alone."""
    def failed(row: bulk.ManifestRow) -> bool:
        try:
            body = target.s3.get_object(Bucket=target.settings.output_bucket,
                                        Key=records.record_key(output_prefix, row.key))["Body"].read()
        except target.s3.exceptions.NoSuchKey:
            return False
        return json.loads(body).get("status") == "failed"

    return [row for row in rows if failed(row)]


def submit(target: Target, manifest_text: str, params: dict[str, Any], output_prefix: str, *,
           max_cost: float | None = None, confirmed: bool = False,
           announce: Callable[[str], None] = lambda line: None, confirm_hint: str = ": set acknowledgeCost",
           bulk_id: str | None = None, retry_failed: bool = False, jsonl: bool = False,
           source: dict[str, Any] | None = None) -> Submitted:
    """Plan, refuse above the cost ceiling unless confirmed, then create the bulk job.

    The same manifest and parameters again regenerate nothing that succeeded (the worker's idempotency);
    `retry_failed` submits only the rows whose records say `failed`, as a new bulk job. `announce` gets
    the plan's line (rows, operation, outputs, cost) before anything is created."""
    arguments, rows, operation, cost = plan(target, manifest_text, params, output_prefix, bulk_id, jsonl)
    if retry_failed:
        kept = failed_rows(target, rows, arguments.output_prefix)
        if not kept:
            raise BulkRefused("no failed rows to retry")
        cost = round(cost * len(kept) / len(rows), 2)
        rows = kept
    if retry_failed or jsonl:  # S3 Batch Operations reads CSV: the rows it is to run, keys encoded
        manifest_text = bulk.encode_manifest((row.bucket, row.key, row.version_id) for row in rows)
    s = target.settings
    announce(f"{len(rows):,} rows, operation {operation}, outputs under s3://{s.output_bucket}/"
             f"{arguments.output_prefix}; estimated model cost ${cost:,.2f}")
    if max_cost is None:
        max_cost = float(s.bulk_max_cost_usd)  # the deployment's bulkMaxCostUsd
    if cost > max_cost and not confirmed:
        raise BulkRefused(f"the estimated cost ${cost:,.2f} is above the ceiling ${max_cost:,.2f}{confirm_hint} "
                          "to run it anyway", "cost_not_acknowledged")
    key = bulk.manifest_key(s.output_prefix, arguments.bulk_id)
    report = bulk.report_prefix(s.output_prefix, arguments.bulk_id)
    etag = target.s3.put_object(Bucket=s.output_bucket, Key=key, Body=manifest_text.encode("utf-8"),
                                ContentType="text/csv")["ETag"].strip('"')
    document = bulk.overrides_document(rows)
    if document:
        arguments = dataclasses.replace(arguments, overrides=bulk.overrides_key(s.output_prefix, arguments.bulk_id))
        target.s3.put_object(Bucket=s.output_bucket, Key=arguments.overrides, ContentType="application/json",
                             Body=json.dumps(document, ensure_ascii=False).encode("utf-8"))
    # A caller-chosen bulk id (an event's) may come back after a fault between the progress item and
    # CreateJob: the item is there but no job. Then only the job is created (its ClientRequestToken is the
    # bulk id, so S3 Batch Operations creates one job however often it is asked).
    known = target.progress.get(arguments.bulk_id) if bulk_id else None
    if known is not None and known.batch_job_id:
        return Submitted(arguments.bulk_id, known.batch_job_id, known.total, operation, cost,
                         arguments.output_prefix, s.output_bucket)
    if known is None:
        target.progress.create(arguments.bulk_id, {
            "rows": len(rows), "operation": operation, "params": params, "output_prefix": arguments.output_prefix,
            "manifest": {"bucket": s.output_bucket, "key": key}, "report_prefix": report,
            "estimated_cost_usd": cost, "created_at": time.time(), "model_id": model_of(s, operation, params),
            **({"submitted_from": source} if source else {})})
    job_id = target.start_job(arguments, key, etag, bulk.manifest_fields(rows), report)
    target.progress.set_batch_job(arguments.bulk_id, job_id)
    return Submitted(arguments.bulk_id, job_id, len(rows), operation, cost, arguments.output_prefix,
                     s.output_bucket)


def model_of(s: Settings, operation: str, params: dict[str, Any]) -> str:
    """The model id a bulk job's rows call (what its quota, and so its ETA, is set for)."""
    if operation in s.operation_models:
        return s.operation_models[operation]
    model = params.get("model_id") if isinstance(params, dict) else None
    return model if isinstance(model, str) and model else s.model_id


# ---- a manifest named by its S3 location (the API and the event) ----------------------------------------

def manifest_location(s: Settings, uri: Any) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key): a bucket this deployment may read (rows' buckets, or the output
    bucket, where `img2img bulk` and other bulk jobs keep manifests)."""
    if not isinstance(uri, str) or not uri.startswith("s3://") or "/" not in uri[5:]:
        raise BulkRefused("manifest must be s3://bucket/key", "invalid_manifest")
    bucket, key = uri[5:].split("/", 1)
    if not key:
        raise BulkRefused("manifest must be s3://bucket/key", "invalid_manifest")
    if not (s.bulk_readable(bucket) or bucket == s.output_bucket):
        raise BulkRefused(f"the manifest's bucket {bucket!r} is not one this deployment may read (the input "
                          "bucket, the output bucket or IMG2IMG_BULK_SOURCE_BUCKETS)", "access_denied")
    return bucket, key


def read_manifest(target: Target, uri: Any) -> tuple[str, bool]:
    """The manifest's text and whether it is JSONL (`*.jsonl`); refused when too large or unreadable.

    An S3 Inventory report (its `manifest.json`) is read whole here, its data files from the inventory's
    destination bucket, and becomes a CSV manifest of its rows: every row is checked before anything is
    created, as for any manifest, and the bulk job stores and runs that CSV (S3 Batch Operations, the
    report and `--retry-failed` then read one format)."""
    bucket, key = manifest_location(target.settings, uri)
    text = _read_text(target, bucket, key, uri)
    if not bulk.is_inventory_manifest(key):
        return text, key.lower().endswith(".jsonl")
    try:
        inventory = bulk.parse_inventory_manifest(text)
    except bulk.ManifestError as exc:
        raise BulkRefused(f"{uri}: {exc}", "invalid_manifest") from None
    data_bucket = inventory.destination_bucket or bucket
    if data_bucket != bucket:
        manifest_location(target.settings, f"s3://{data_bucket}/{inventory.files[0]}")  # readable, or refused
    try:
        rows = bulk.parse_inventory(inventory, lambda file_key: _read_bytes(target, data_bucket, file_key),
                                    target.settings.bulk_readable)
    except bulk.ManifestError as exc:
        raise BulkRefused(f"{uri}: {exc}", "invalid_manifest") from None
    return bulk.encode_manifest((row.bucket, row.key, row.version_id) for row in rows), False


def _read_text(target: Target, bucket: str, key: str, uri: str) -> str:
    body = _read_bytes(target, bucket, key, limit=bulk.MAX_MANIFEST_BYTES)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BulkRefused(f"the manifest {uri} is not UTF-8 text", "invalid_manifest") from None


def _read_bytes(target: Target, bucket: str, key: str, limit: int = bulk.MAX_MANIFEST_BYTES) -> bytes:
    """One manifest object (or inventory data file), at most `limit` bytes, or BulkRefused saying why."""
    from botocore.exceptions import BotoCoreError, ClientError

    from .aws import s3 as s3_codes  # S3's error codes by what we do about them: one home

    uri = f"s3://{bucket}/{key}"
    try:
        body = target.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{limit}")["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in s3_codes.NOT_FOUND:
            raise BulkRefused(f"no manifest at {uri}", "invalid_manifest") from None
        if code == "InvalidRange":  # a range of an empty object
            raise BulkRefused(f"the manifest at {uri} is empty", "invalid_manifest") from None
        if code in s3_codes.DENIED:
            raise BulkRefused(f"this deployment may not read {uri}", "access_denied") from None
        raise transient("storage_error", f"could not read the manifest {uri}: {exc}") from None
    except BotoCoreError as exc:
        raise transient("storage_error", f"could not read the manifest {uri}: {exc}") from None
    if len(body) > limit:
        raise BulkRefused(f"the manifest {uri} is larger than {limit:,} bytes", "invalid_manifest")
    return body


def submit_request(target: Target, manifest_uri: Any, params: Any, output_prefix: Any, *, namespace: str,
                   acknowledge_cost: bool = False, operation: str | None = None, bulk_id: str | None = None,
                   source: dict[str, Any] | None = None) -> Submitted:
    """A bulk job asked for by the API or an event: the manifest by its S3 location, the outputs under
    `namespace` (`api/`, `events/`: whoever may call cannot overwrite upload outputs), the ceiling
    lifted only by `acknowledgeCost`."""
    if not isinstance(params, dict):
        raise BulkRefused("invalid_parameters: params must be a JSON object (docs/parameters.md)")
    if operation is not None:
        if params.get("operation", operation) != operation:
            raise BulkRefused("invalid_parameters: operation is given twice, as a field and in params, with "
                              "different values: set one of them")
        params = {**params, "operation": operation}
    if not isinstance(output_prefix, str) or not output_prefix or prefix_problem(output_prefix):
        raise BulkRefused(f"invalid_parameters: output_prefix must be {ALLOWED_PREFIX}")
    text, jsonl = read_manifest(target, manifest_uri)
    return submit(target, text, params, namespace + output_prefix, confirmed=acknowledge_cost, bulk_id=bulk_id,
                  jsonl=jsonl, source=source)


def aws_target(settings: Settings, function_arn: str = "", role_arn: str = "", s3=None, dynamodb=None,
               s3control=None) -> Target:
    """Bulk jobs on S3 Batch Operations: the enqueue function and the role it runs as (the stack's)."""
    from .aws.clients import client

    function_arn = function_arn or settings.bulk_function_arn
    role_arn = role_arn or settings.bulk_role_arn

    def start(arguments, key, etag, fields, report_prefix):
        if not function_arn or not role_arn:
            raise BulkRefused("the enqueue function and the Batch Operations role are needed on AWS (the stack's "
                              "BulkFunctionArn and BulkRoleArn outputs)", "internal_error")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return create_batch_job(account_id=function_arn.split(":")[4], function_arn=function_arn,
                                    role_arn=role_arn, manifest_bucket=settings.output_bucket, manifest_key=key,
                                    manifest_etag=etag, manifest_fields=fields, report_bucket=settings.output_bucket,
                                    report_prefix=report_prefix, arguments=arguments, s3control=s3control)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500) >= 500 or \
                    error.get("Code") in ("TooManyRequestsException", "Throttling", "ThrottlingException"):
                raise transient("storage_error", f"S3 Batch Operations did not create the job: {exc}") from None
            raise BulkRefused(f"S3 Batch Operations refused the job: {error.get('Code')}: {error.get('Message')}",
                              "access_denied" if "AccessDenied" in str(error.get("Code")) else "internal_error") \
                from None
        except BotoCoreError as exc:
            raise transient("storage_error", f"S3 Batch Operations could not be reached: {exc}") from None

    return Target(settings, s3 or client("s3"),
                  DynamoBulkProgress(settings.idempotency_table, dynamodb=dynamodb or client("dynamodb")), start)


# ---- status ----------------------------------------------------------------------------------------------

def status(progress: bulk.Progress, settings: Settings, now: float) -> dict[str, Any]:
    """A bulk job's progress as the API and the event answer it (counts, rate, ETA, report once done)."""
    definition = progress.definition
    started = float(definition.get("created_at") or now)
    rate = bulk.observed_rate(progress.done, now - started)
    eta = bulk.eta_seconds(progress.total - progress.done, settings.budgets.rpm_for(definition.get("model_id") or
                                                                                     settings.model_id), rate)
    out: dict[str, Any] = {
        "bulk_id": progress.bulk_id, "status": "finished" if progress.finished else "running",
        "rows": progress.total, "done": progress.done, "counts": dict(progress.counts),
        "errors": dict(progress.errors), "rate_per_minute": round(rate, 2), "eta_seconds": eta,
        "operation": definition.get("operation"), "output_prefix": definition.get("output_prefix"),
        "estimated_cost_usd": definition.get("estimated_cost_usd"),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}
    if progress.finished and definition.get("report_prefix"):
        out["report"] = {"bucket": settings.output_bucket, "prefix": definition["report_prefix"]}
    return out
