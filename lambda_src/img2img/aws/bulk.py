"""Bulk jobs' AWS edge: the progress item, the job queue, the S3 Batch Operations job.

The progress item is `bulk#<bulk_id>` in the idempotency table (its own key namespace beside
Powertools' `img2img-job#…`/`img2img-api#…` and the API's `api-job#…`): the bulk job's definition
(`bulk`, JSON) written at submit, and one number per status (`n_succeeded`, `n_failed`, `n_rejected`)
and per error code (`e_<code>`) that the worker and the enqueue function ADD to, atomically. Reading
progress is one GetItem, never a scan of the output bucket.
"""
from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..core import bulk
from ..core.errors import JobError, transient
from ..tables import PARTITION_KEY, TTL_ATTRIBUTE, key
from .clients import client
from .s3 import NOT_FOUND_CODES

ITEM_PREFIX = "bulk#"
ITEM_TTL_SECONDS = 90 * 24 * 3600  # long after the longest bulk job (S3 Batch Operations keeps jobs 90 days)


class DynamoBulkProgress:
    """The core's BulkProgress port, and the submit/status side of the same item."""

    def __init__(self, table_name: str, dynamodb=None, clock=time.time):
        self.table_name = table_name
        self._dynamodb = dynamodb
        self.clock = clock

    @property
    def dynamodb(self):
        if self._dynamodb is None:
            self._dynamodb = client("dynamodb")
        return self._dynamodb

    def create(self, bulk_id: str, definition: dict[str, Any]) -> None:
        try:
            self.dynamodb.put_item(TableName=self.table_name, Item={
                PARTITION_KEY: {"S": ITEM_PREFIX + bulk_id},
                "bulk": {"S": json.dumps(definition, separators=(",", ":"), default=str)},
                TTL_ATTRIBUTE: {"N": str(int(self.clock()) + ITEM_TTL_SECONDS)},
            }, ConditionExpression="attribute_not_exists(id)")
        except (ClientError, BotoCoreError) as exc:
            raise transient("storage_error", f"could not store the bulk job: {exc}") from None

    def set_batch_job(self, bulk_id: str, batch_job_id: str) -> None:
        self._update(bulk_id, "SET batch_job_id = :j", {":j": {"S": batch_job_id}}, {})

    def count(self, bulk_id: str, status: str, error_code: str | None,
              line: dict[str, Any] | None = None) -> bulk.Progress | None:
        """Count one row's outcome; with its report `line`, once per row (its outcome item and the ADD in one
        transaction, only if the item does not exist yet). The progress after it."""
        names = bulk.counter_names(status, error_code)
        aliases = {f"#c{i}": name for i, name in enumerate(names)}
        expression = "ADD " + ", ".join(f"{alias} :one" for alias in aliases)
        if line is None:
            self._update(bulk_id, expression, {":one": {"N": "1"}}, aliases)
            return None
        digest = bulk.row_digest(line["bucket"], line["key"], line.get("version_id"))
        try:
            self.dynamodb.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table_name, "Item": {
                    PARTITION_KEY: {"S": f"{ITEM_PREFIX}{bulk_id}#{digest}"},
                    "line": {"S": json.dumps(line, separators=(",", ":"), ensure_ascii=False)},
                    TTL_ATTRIBUTE: {"N": str(int(self.clock()) + ITEM_TTL_SECONDS)}},
                    "ConditionExpression": f"attribute_not_exists({PARTITION_KEY})"}},
                {"Update": {"TableName": self.table_name, "Key": key(ITEM_PREFIX + bulk_id),
                            "UpdateExpression": expression, "ExpressionAttributeNames": aliases,
                            "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if not (reasons and (reasons[0] or {}).get("Code") == "ConditionalCheckFailed"):
                raise transient("storage_error", f"could not count the bulk row: {exc}") from None
            # counted already (a message that came back): the progress as it is
        except BotoCoreError as exc:
            raise transient("storage_error", f"could not count the bulk row: {exc}") from None
        return self.get(bulk_id)

    def request_report(self, bulk_id: str) -> bool:
        """Claim the final report for this bulk job: True for exactly one caller (a conditional SET)."""
        return self._conditional(bulk_id, "SET report_requested_at = :now",
                                 "attribute_not_exists(completed_at) AND attribute_not_exists(report_requested_at)",
                                 {":now": {"N": str(int(self.clock()))}})

    def release_report(self, bulk_id: str) -> None:
        """The claimed request could not be sent: let the next caller claim it."""
        self._update(bulk_id, "REMOVE report_requested_at", {}, {})

    def complete(self, bulk_id: str, report_key: str, completed_at: str) -> bool:
        """Mark the report written: True for exactly one caller, the one that publishes BulkJobCompleted."""
        return self._conditional(bulk_id, "SET completed_at = :at, report_key = :k",
                                 "attribute_not_exists(completed_at)",
                                 {":at": {"S": completed_at}, ":k": {"S": report_key}})

    def lines(self, bulk_id: str, digests: list[str]) -> dict[str, dict[str, Any]]:
        """The rows' outcome items (BatchGetItem, 100 keys a call), by digest; absent rows are left out."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(digests))
        for start in range(0, len(unique), 100):
            batch = [key(f"{ITEM_PREFIX}{bulk_id}#{d}") for d in unique[start:start + 100]]
            pending = {self.table_name: {"Keys": batch, "ConsistentRead": True}}
            for attempt in range(8):
                try:
                    answer = self.dynamodb.batch_get_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as exc:
                    raise transient("storage_error", f"could not read the bulk job's rows: {exc}") from None
                for item in answer.get("Responses", {}).get(self.table_name, []):
                    found[item[PARTITION_KEY]["S"].rsplit("#", 1)[-1]] = json.loads(item["line"]["S"])
                pending = answer.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(2.0, 0.05 * 2 ** attempt))
            else:
                raise transient("storage_error", "could not read the bulk job's rows (throttled)")
        return found

    def get(self, bulk_id: str) -> bulk.Progress | None:
        try:
            item = self.dynamodb.get_item(TableName=self.table_name, Key=key(ITEM_PREFIX + bulk_id),
                                          ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise transient("storage_error", f"could not read the bulk job: {exc}") from None
        if not item or "bulk" not in item:
            return None
        counters = {name: int(value["N"]) for name, value in item.items() if "N" in value and name[:2] in ("n_", "e_")}
        return bulk.progress_of(bulk_id, counters, json.loads(item["bulk"]["S"]),
                                (item.get("completed_at") or {}).get("S"), "report_requested_at" in item,
                                (item.get("batch_job_id") or {}).get("S"))

    def _conditional(self, bulk_id: str, expression: str, condition: str, values: dict) -> bool:
        try:
            self.dynamodb.update_item(TableName=self.table_name, Key=key(ITEM_PREFIX + bulk_id),
                                      UpdateExpression=expression, ConditionExpression=condition,
                                      ExpressionAttributeValues=values)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise transient("storage_error", f"could not update the bulk job: {exc}") from None
        except BotoCoreError as exc:
            raise transient("storage_error", f"could not update the bulk job: {exc}") from None
        return True

    def _update(self, bulk_id: str, expression: str, values: dict, names: dict) -> None:
        try:
            self.dynamodb.update_item(TableName=self.table_name, Key=key(ITEM_PREFIX + bulk_id),
                                      UpdateExpression=expression,
                                      **({"ExpressionAttributeValues": values} if values else {}),
                                      **({"ExpressionAttributeNames": names} if names else {}))
        except (ClientError, BotoCoreError) as exc:
            raise transient("storage_error", f"could not update the bulk job's progress: {exc}") from None


def read_overrides(bucket: str, key: str) -> dict[str, dict[str, Any]]:
    """A JSONL bulk job's per-row params (core/bulk.overrides_document), written at submit."""
    try:
        body = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES:
            raise JobError("invalid_parameters", f"the bulk job's overrides s3://{bucket}/{key} do not exist") from None
        raise transient("storage_error", f"could not read the bulk job's overrides: {exc}") from None
    except BotoCoreError as exc:
        raise transient("storage_error", f"could not read the bulk job's overrides: {exc}") from None
    document = json.loads(body)
    if not isinstance(document, dict):
        raise JobError("invalid_parameters", "the bulk job's overrides are not a JSON object")
    return document


def enqueue(queue_url: str, message: dict[str, Any]) -> None:
    try:
        client("sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
    except (ClientError, BotoCoreError) as exc:
        raise transient("storage_error", f"could not queue the job: {exc}") from None


def create_batch_job(*, account_id: str, function_arn: str, role_arn: str, manifest_bucket: str,
                     manifest_key: str, manifest_etag: str, manifest_fields: list[str], report_bucket: str,
                     report_prefix: str, arguments: bulk.BulkArguments, priority: int = 10, s3control=None,
                     manifest_spec: dict[str, Any] | None = None) -> str:
    """The S3 Batch Operations job that invokes the enqueue function once per manifest row; its id.
    `manifest_spec` (core/bulk.manifest_spec) for an S3 Inventory report's manifest.json; else a CSV
    manifest with `manifest_fields`."""
    s3control = s3control or client("s3control")
    response = s3control.create_job(
        AccountId=account_id, ConfirmationRequired=False, Priority=priority, RoleArn=role_arn,
        ClientRequestToken=arguments.bulk_id, Description=f"img2img bulk job {arguments.bulk_id}",
        Operation={"LambdaInvoke": {"FunctionArn": function_arn,
                                    "InvocationSchemaVersion": bulk.SCHEMA_VERSION,
                                    "UserArguments": arguments.user_arguments()}},
        Manifest={"Spec": manifest_spec or {"Format": bulk.CSV_FORMAT, "Fields": manifest_fields},
                  "Location": {"ObjectArn": f"arn:aws:s3:::{manifest_bucket}/{manifest_key}",
                               "ETag": manifest_etag}},
        Report={"Enabled": True, "Bucket": f"arn:aws:s3:::{report_bucket}", "Prefix": report_prefix.rstrip("/"),
                "Format": "Report_CSV_20180820", "ReportScope": "AllTasks"})
    return response["JobId"]
