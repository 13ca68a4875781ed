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
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from img2img import bulk_submit
from img2img.aws.bulk import DynamoBulkProgress
from img2img.bulk_submit import BulkRefused, Target, new_bulk_id  # noqa: F401  (new_bulk_id: re-exported)
from img2img.core import bulk
from img2img.limits import LIMITS
from img2img.settings import Settings
from img2img_local.event_source import FAKE_CREDENTIALS
from img2img_local.project import load_pipeline_config

BulkError = BulkRefused  # a bulk job refused before anything was created (one line, exit status 1)


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


# ---- submit (img2img/bulk_submit.py: the path the API and the event share) ------------------------------

plan = bulk_submit.plan
failed_rows = bulk_submit.failed_rows


def submit(target: Target, manifest_text: str, params: dict[str, Any], output_prefix: str, *,
           max_cost: float | None = None, confirmed: bool = False, out=None,
           bulk_id: str | None = None, retry_failed: bool = False, jsonl: bool = False) -> tuple[str, str]:
    """bulk_submit.submit, printing the plan and the job: (bulk id, Batch Operations job id)."""
    out = out or sys.stdout
    done = bulk_submit.submit(target, manifest_text, params, output_prefix, max_cost=max_cost, confirmed=confirmed,
                              announce=lambda line: print(line, file=out), confirm_hint=" (--max-cost): pass --yes",
                              bulk_id=bulk_id, retry_failed=retry_failed, jsonl=jsonl)
    print(f"bulk job {done.bulk_id} (S3 Batch Operations job {done.batch_job_id})", file=out)
    return done.bulk_id, done.batch_job_id


# ---- status ---------------------------------------------------------------------------------------------

def status_line(progress: bulk.Progress, now: float, quota_rpm: float | None = None) -> str:
    """The bar, the rate so far and the ETA (at the model's configured quota if it has one: docs/bulk.md)."""
    started = float(progress.definition.get("created_at") or now)
    rate = bulk.observed_rate(progress.done, now - started)
    eta = bulk.eta_seconds(progress.total - progress.done, quota_rpm, rate)
    shown = f", ETA {eta:,} s" if eta else ""
    paced = f" (quota {quota_rpm:g}/min)" if quota_rpm and eta else ""
    return f"{bulk.progress_bar(progress)}  {rate:,.0f} rows/min{shown}{paced}"


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
        quota = target.settings.budgets.rpm_for(progress.definition.get("model_id") or target.settings.model_id)
        print(("\r" if live else "") + status_line(progress, clock(), quota), end="" if live else "\n", file=out,
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
    submit_parser.add_argument("manifest", help="CSV bucket,key[,version] (keys URL-encoded), or *.jsonl: "
                               "{bucket, key, version_id?, params?} per line (params override per row); a file, "
                               "or s3://bucket/key (also an S3 Inventory report's manifest.json)")
    submit_parser.add_argument("--output-prefix", required=True, help="where the outputs and records go")
    submit_parser.add_argument("--operation", help="an operation (docs/operations.md)")
    submit_parser.add_argument("--prompt")
    submit_parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                               help="another job parameter (repeatable; values are JSON or text)")
    submit_parser.add_argument("--max-cost", type=float, default=None, metavar="USD",
                               help="refuse above this estimated model cost (default: the deployment's "
                                    f"bulkMaxCostUsd, {LIMITS['bulk_max_cost_usd'].default})")
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
            text, jsonl = _manifest(target, args.manifest)
            bulk_id, job_id = submit(target, text, _params(args), args.output_prefix,
                                     max_cost=args.max_cost, confirmed=args.yes, retry_failed=args.retry_failed,
                                     jsonl=jsonl)
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


def _manifest(target: Target, manifest: str) -> tuple[str, bool]:
    """(text, is JSONL) of a local file, or of an S3 object (a CSV/JSONL manifest or an inventory report)."""
    if manifest.startswith("s3://"):
        return bulk_submit.read_manifest(target, manifest)
    path = Path(manifest)
    return path.read_text("utf-8"), path.suffix.lower() == ".jsonl"


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
    function_arn, role_arn = getattr(args, "function_arn", ""), getattr(args, "role_arn", "")
    target = bulk_submit.aws_target(settings, function_arn, role_arn, s3=boto3.client("s3"),
                                    dynamodb=boto3.client("dynamodb"))
    start = target.start_job

    def checked_start(*job):
        if not function_arn or not role_arn:
            raise BulkError("--function-arn and --role-arn are needed on AWS (the stack's bulk outputs)")
        return start(*job)

    target.start_job = checked_start
    return target


def _env_file(path: Path) -> dict[str, str]:
    import shlex

    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            env[name.strip()] = (shlex.split(value) or [""])[0]
    return env
