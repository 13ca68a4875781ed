"""S3 Batch Operations' LambdaInvoke target: one manifest row in, one job message on the job queue out.

Event (invocation schema 2.0): `{invocationSchemaVersion, invocationId, job: {id, userArguments},
tasks: [{taskId, s3Key (URL-encoded), s3VersionId, s3Bucket}]}`. Answer: `{invocationSchemaVersion,
treatMissingKeysAs, invocationId, results: [{taskId, resultCode, resultString}]}`.

The function does not read the object: the worker does, and a row whose object is missing or unreadable
ends as the worker's failure record (`source_not_found`), like any other job; a row refused here for good
is counted `rejected` with its error code (and, if it was the last row, the report is asked for). A JSONL
manifest's per-row params (the `overrides` argument names their object) override the bulk job's, field by
field. Refused here, and counted
as `rejected` on the bulk job: a bucket this deployment may not read, arguments that are not a bulk
job's (PermanentFailure). A queue that cannot be written is a TemporaryFailure: S3 Batch Operations
retries the task.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..aws.bulk import DynamoBulkProgress, enqueue, read_overrides
from ..core import bulk
from ..core.errors import JobError
from ..observability import logger
from ..settings import get_settings


@lru_cache(maxsize=1)
def progress() -> DynamoBulkProgress:
    return DynamoBulkProgress(get_settings().idempotency_table)


@lru_cache(maxsize=4)
def overrides(key: str) -> dict[str, dict[str, Any]]:
    """A JSONL bulk job's per-row params, read once per sandbox (a bulk job's invocations reuse it)."""
    return read_overrides(get_settings().output_bucket, key)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    tasks, results = bulk.tasks_of(event)
    if not isinstance(event, dict) or event.get("invocationSchemaVersion") != bulk.SCHEMA_VERSION:
        return bulk.response(event, results + [
            bulk.result(t.task_id, bulk.PERMANENT_FAILURE, "the LambdaInvoke operation must use "
                        f"InvocationSchemaVersion {bulk.SCHEMA_VERSION} (it carries the bulk job's arguments)")
            for t in tasks])
    try:
        arguments = bulk.parse_arguments((event.get("job") or {}).get("userArguments"))
    except JobError as exc:
        return bulk.response(event, results + [bulk.result(t.task_id, bulk.PERMANENT_FAILURE, exc.message)
                                               for t in tasks])
    return bulk.response(event, results + [_enqueue(arguments, task) for task in tasks])


def _enqueue(arguments: bulk.BulkArguments, task: bulk.Task) -> dict[str, str]:
    s = get_settings()
    if not s.bulk_readable(task.bucket):
        return _refused(arguments.bulk_id, task, "bucket_not_allowed", f"bucket {task.bucket} is not one this "
                        "deployment may read (the input bucket or IMG2IMG_BULK_SOURCE_BUCKETS)")
    try:
        row = overrides(arguments.overrides).get(bulk.row_id(task.bucket, task.key, task.version_id)) \
            if arguments.overrides else None
        enqueue(s.job_queue_url, arguments.job_message(task.bucket, task.key, task.version_id, row))
    except JobError as exc:
        code, message = bulk.result_for(exc)
        logger.warning("could not queue a bulk row", extra={"bulk_id": arguments.bulk_id, "error": exc.code})
        if not exc.retryable:  # final: the row will have no record, so the bulk job counts it here
            return _refused(arguments.bulk_id, task, exc.code, message)
        return bulk.result(task.task_id, code, message)
    return bulk.result(task.task_id, bulk.SUCCEEDED, "queued")


def _refused(bulk_id: str, task: bulk.Task, code: str, message: str) -> dict[str, str]:
    """A row refused for good has no record: its outcome is counted (once) here, and if it was the bulk
    job's last row, the report is asked for on the job queue as the worker would. A count that fails is a
    TemporaryFailure, so that S3 Batch Operations asks again and the bulk job can still finish."""
    try:
        state = progress().count(bulk_id, bulk.REJECTED, code,
                                 bulk.outcome_line(task.bucket, task.key, task.version_id, bulk.REJECTED, code))
        bulk.request_report_if_finished(progress(), state,
                                        lambda request: enqueue(get_settings().job_queue_url, request))
    except JobError as exc:
        logger.exception("could not count a refused bulk row", extra={"bulk_id": bulk_id})
        if exc.retryable:
            return bulk.result(task.task_id, bulk.TEMPORARY_FAILURE, f"{exc.code}: {exc.message}")
    return bulk.result(task.task_id, bulk.PERMANENT_FAILURE, message)
