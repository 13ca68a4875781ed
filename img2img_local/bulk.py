"""`img2img bulk submit|status`: bulk jobs on S3 Batch Operations (docs/bulk.md).

    img2img bulk submit manifest.csv --operation remove-background --output-prefix bulk/shop/ [--yes]
    img2img bulk status BULK_ID [--watch]

`submit` validates everything before anything is created (the manifest's rows and buckets, the
parameters as every job's, S3 Batch Operations' argument limits, the estimated model cost against
`--max-cost`), then stores the manifest and the bulk job's progress item and creates the Batch
Operations job. With `--env-file` (the local stack's, `img2img local --env-file local.env`) the job
runs on this process's emulation of S3 Batch Operations (img2img_local/batch_operations.py); without
it, on AWS (`--function-arn`, `--role-arn`: the stack's bulk outputs).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from img2img.aws.bulk import DynamoBulkProgress, create_batch_job
from img2img.core import bulk, records
from img2img.core import params as P
from img2img.core.errors import JobError
from img2img.core.pipeline import Pipeline
from img2img.models.registry import adapter_for
from img2img.settings import Settings
from img2img_local.event_source import FAKE_CREDENTIALS
from img2img_local.project import load_pipeline_config

DEFAULT_MAX_COST_USD = 100.0


class BulkError(Exception):
    """A bulk job refused before anything was created (printed as one line, exit status 1)."""


@dataclass
class Target:
    """Where a bulk job runs: the deployment's settings, its S3 and progress items, its Batch Operations."""

    settings: Settings
    s3: Any
    progress: DynamoBulkProgress
    # (arguments, manifest key, manifest ETag, manifest fields, report prefix) -> the Batch Operations job id
    start_job: Callable[[bulk.BulkArguments, str, str, list[str], str], str]
    operations: Any = None  # the emulated S3 Batch Operations (local), None on AWS


def stack_target(stack) -> Target:
    """An in-process LocalStack's bulk target (its emulated S3 Batch Operations)."""
    settings = Settings.from_env(stack.worker_environment())
    return _local_target(settings, stack.client("s3"), stack.client("dynamodb"), stack.batch_operations)


def _local_target(settings: Settings, s3, dynamodb, operations) -> Target:
    def start(arguments, key, etag, fields, report_prefix):
        return operations.create_job(manifest_bucket=settings.output_bucket, manifest_key=key,
                                     manifest_etag=etag, user_arguments=arguments.user_arguments(),
                                     report_bucket=settings.output_bucket, report_prefix=report_prefix)

    return Target(settings, s3, DynamoBulkProgress(settings.idempotency_table, dynamodb=dynamodb), start, operations)


# ---- submit ---------------------------------------------------------------------------------------------

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
        raise BulkError(str(exc)) from None
    deployment = P.deployment_layer(s.model_id, s.output_format, s.default_prompt, s.default_params)
    validator = Pipeline(s, store=None, model=None, registry=adapter_for)
    try:
        operation = bulk.check_params(params, deployment, validator.validate)
        checked = bulk.parse_arguments({bulk.ARG_BULK_ID: bulk_id or new_bulk_id(),
                                        bulk.ARG_OUTPUT_PREFIX: s.output_prefix + output_prefix})
        arguments = bulk.BulkArguments(checked.bulk_id, checked.output_prefix, params)
        arguments.user_arguments()  # within S3 Batch Operations' limits
    except JobError as exc:
        raise BulkError(f"{exc.code}: {exc.message}") from None
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
        raise BulkError(str(bulk.ManifestError(problems, len(problems))))
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
           max_cost: float = DEFAULT_MAX_COST_USD, confirmed: bool = False, out=None,
           bulk_id: str | None = None, retry_failed: bool = False, jsonl: bool = False) -> tuple[str, str]:
    """Plan, refuse above the cost ceiling unless confirmed, then create: (bulk id, Batch Operations job id).

    The same manifest and parameters again regenerate nothing that succeeded (the worker's idempotency);
    `retry_failed` submits only the rows whose records say `failed`, as a new bulk job."""
    out = out or sys.stdout
    arguments, rows, operation, cost = plan(target, manifest_text, params, output_prefix, bulk_id, jsonl)
    if retry_failed:
        kept = failed_rows(target, rows, arguments.output_prefix)
        if not kept:
            raise BulkError("no failed rows to retry")
        cost = round(cost * len(kept) / len(rows), 2)
        rows = kept
    if retry_failed or jsonl:  # S3 Batch Operations reads CSV: the rows it is to run, keys encoded
        manifest_text = bulk.encode_manifest((row.bucket, row.key, row.version_id) for row in rows)
    print(f"{len(rows):,} rows, operation {operation}, outputs under s3://{target.settings.output_bucket}/"
          f"{arguments.output_prefix}; estimated model cost ${cost:,.2f}", file=out)
    if cost > max_cost and not confirmed:
        raise BulkError(f"the estimated cost ${cost:,.2f} is above the ceiling ${max_cost:,.2f} "
                        "(--max-cost): pass --yes to run it anyway")
    s = target.settings
    key, report = bulk.manifest_key(s.output_prefix, arguments.bulk_id), bulk.report_prefix(s.output_prefix,
                                                                                           arguments.bulk_id)
    etag = target.s3.put_object(Bucket=s.output_bucket, Key=key, Body=manifest_text.encode("utf-8"),
                                ContentType="text/csv")["ETag"].strip('"')
    document = bulk.overrides_document(rows)
    if document:
        arguments = dataclasses.replace(arguments, overrides=bulk.overrides_key(s.output_prefix, arguments.bulk_id))
        target.s3.put_object(Bucket=s.output_bucket, Key=arguments.overrides, ContentType="application/json",
                             Body=json.dumps(document, ensure_ascii=False).encode("utf-8"))
    target.progress.create(arguments.bulk_id, {
        "rows": len(rows), "operation": operation, "params": params, "output_prefix": arguments.output_prefix,
        "manifest": {"bucket": s.output_bucket, "key": key}, "report_prefix": report,
        "estimated_cost_usd": cost, "created_at": time.time()})
    job_id = target.start_job(arguments, key, etag, bulk.manifest_fields(rows), report)
    target.progress.set_batch_job(arguments.bulk_id, job_id)
    print(f"bulk job {arguments.bulk_id} (S3 Batch Operations job {job_id})", file=out)
    return arguments.bulk_id, job_id


# ---- status ---------------------------------------------------------------------------------------------

def status_line(progress: bulk.Progress, now: float) -> str:
    started = float(progress.definition.get("created_at") or now)
    elapsed = max(now - started, 1e-6)
    rate = progress.done / elapsed * 60
    left = progress.total - progress.done
    eta = f", ETA {left / (rate / 60):.0f} s" if rate > 0 and left > 0 else ""
    return f"{bulk.progress_bar(progress)}  {rate:,.0f} rows/min{eta}"


def watch(target: Target, bulk_id: str, *, out=None, interval: float = 1.0, timeout: float | None = None,
          clock: Callable[[], float] = time.time) -> bulk.Progress:
    """Print the progress bar until every row has its record (or the timeout)."""
    out = out or sys.stdout
    deadline = None if timeout is None else clock() + timeout
    live = getattr(out, "isatty", lambda: False)()
    while True:
        progress = target.progress.get(bulk_id)
        if progress is None:
            raise BulkError(f"no bulk job {bulk_id}")
        print(("\r" if live else "") + status_line(progress, clock()), end="" if live else "\n", file=out,
              flush=True)
        if progress.finished or (deadline is not None and clock() >= deadline):
            if live:
                print(file=out)
            return progress
        time.sleep(interval)


# ---- the command ----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bulk_command", required=True, metavar="SUBCOMMAND")
    submit_parser = sub.add_parser("submit", help="validate a manifest and parameters, then start the bulk job")
    submit_parser.add_argument("manifest", type=Path, help="CSV bucket,key[,version] (keys URL-encoded), or "
                               "*.jsonl: {bucket, key, version_id?, params?} per line (params override per row)")
    submit_parser.add_argument("--output-prefix", required=True, help="where the outputs and records go")
    submit_parser.add_argument("--operation", help="an operation (docs/operations.md)")
    submit_parser.add_argument("--prompt")
    submit_parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                               help="another job parameter (repeatable; values are JSON or text)")
    submit_parser.add_argument("--max-cost", type=float, default=DEFAULT_MAX_COST_USD, metavar="USD",
                               help=f"refuse above this estimated model cost (default {DEFAULT_MAX_COST_USD:g})")
    submit_parser.add_argument("--yes", action="store_true", help="run even above --max-cost")
    submit_parser.add_argument("--watch", action="store_true", help="show the progress bar until it is done")
    submit_parser.add_argument("--retry-failed", action="store_true",
                               help="submit only the rows whose records (under --output-prefix) say failed")
    _target_arguments(submit_parser)
    submit_parser.add_argument("--function-arn", default=os.environ.get("IMG2IMG_BULK_FUNCTION_ARN", ""),
                               help="AWS: the enqueue function (stack output; env IMG2IMG_BULK_FUNCTION_ARN)")
    submit_parser.add_argument("--role-arn", default=os.environ.get("IMG2IMG_BULK_ROLE_ARN", ""),
                               help="AWS: the Batch Operations role (stack output; env IMG2IMG_BULK_ROLE_ARN)")
    status_parser = sub.add_parser("status", help="a bulk job's progress: counts per status and error code")
    status_parser.add_argument("bulk_id")
    status_parser.add_argument("--watch", action="store_true", help="a live progress bar until every row is done")
    _target_arguments(status_parser)


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env-file", type=Path, metavar="PATH",
                        help="the local stack's env file: run on its emulated S3 Batch Operations")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="a cdk.json context override, as the deployment was made with")


def run(args: argparse.Namespace) -> int:
    target = _target(args)
    try:
        if args.bulk_command == "submit":
            bulk_id, job_id = submit(target, args.manifest.read_text("utf-8"), _params(args), args.output_prefix,
                                     max_cost=args.max_cost, confirmed=args.yes, retry_failed=args.retry_failed,
                                     jsonl=args.manifest.suffix.lower() == ".jsonl")
            if target.operations is not None:  # local: this process runs the emulated job to its end
                target.operations.wait(job_id)
            if args.watch:
                watch(target, bulk_id)
            return 0
        progress = watch(target, args.bulk_id, timeout=None if args.watch else 0)
        return 0 if progress.finished else 3
    except BulkError as exc:
        print(f"img2img bulk: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if target.operations is not None:
            target.operations.close()


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.operation:
        params["operation"] = args.operation
    if args.prompt:
        params["prompt"] = args.prompt
    for pair in args.param:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BulkError(f"--param {pair!r}: expected NAME=VALUE")
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    return params


def _target(args: argparse.Namespace) -> Target:
    env = _env_file(args.env_file) if args.env_file else dict(os.environ)
    config = load_pipeline_config(args.context)
    settings = config.worker_settings(
        input_bucket=env.get("IMG2IMG_INPUT_BUCKET", ""), output_bucket=env.get("IMG2IMG_OUTPUT_BUCKET", ""),
        idempotency_table=env.get("IMG2IMG_IDEMPOTENCY_TABLE", ""), job_queue_url=env.get("IMG2IMG_JOB_QUEUE_URL", ""),
        event_bus_name=env.get("IMG2IMG_EVENT_BUS_NAME", ""))
    if not settings.output_bucket or not settings.idempotency_table:
        raise BulkError("IMG2IMG_OUTPUT_BUCKET and IMG2IMG_IDEMPOTENCY_TABLE are needed (--env-file, or the env)")
    if args.env_file:
        from img2img_local.stack import REGION, batch_operations_for

        endpoint = env["AWS_ENDPOINT_URL"]
        clients = {name: boto3.client(name, endpoint_url=endpoint, region_name=REGION, **FAKE_CREDENTIALS)
                   for name in ("s3", "dynamodb")}
        function_env = {**settings.to_env(), **{k: v for k, v in env.items() if k.startswith("AWS_")},
                        "AWS_SESSION_TOKEN": FAKE_CREDENTIALS["aws_session_token"]}
        operations = batch_operations_for(function_env, endpoint, "img2img-local-bulk-enqueue", config.python_version)
        return _local_target(settings, clients["s3"], clients["dynamodb"], operations)
    return _aws_target(settings, args)


def _aws_target(settings: Settings, args: argparse.Namespace) -> Target:
    def start(arguments, key, etag, fields, report_prefix):
        if not getattr(args, "function_arn", "") or not getattr(args, "role_arn", ""):
            raise BulkError("--function-arn and --role-arn are needed on AWS (the stack's bulk outputs)")
        account = boto3.client("sts").get_caller_identity()["Account"]
        return create_batch_job(account_id=account, function_arn=args.function_arn, role_arn=args.role_arn,
                                manifest_bucket=settings.output_bucket, manifest_key=key, manifest_etag=etag,
                                manifest_fields=fields, report_bucket=settings.output_bucket,
                                report_prefix=report_prefix, arguments=arguments)

    return Target(settings, boto3.client("s3"), DynamoBulkProgress(settings.idempotency_table,
                                                                   dynamodb=boto3.client("dynamodb")), start)


def _env_file(path: Path) -> dict[str, str]:
    import shlex

    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            env[name.strip()] = (shlex.split(value) or [""])[0]
    return env
