"""Bulk jobs on S3 Batch Operations (docs/bulk.md): the enqueue function and the role Batch Operations uses.

The enqueue function (handlers/bulk_enqueue.py) turns one manifest row into one job message; its role
may only send to the job queue, read JSONL bulk jobs' per-row overrides (`<outputPrefix>_bulk/*/
overrides.json`) and count refused rows (their outcome item and the counters' ADD, once per row) in the
idempotency table. The Batch Operations role, trusted by `batchoperations.s3.amazonaws.com` only, may:

* `lambda:InvokeFunction` on the enqueue function;
* `s3:GetObject`/`s3:GetObjectVersion` on bulk manifests only (`<outputPrefix>_bulk/*/manifest.csv`);
* `s3:PutObject` for completion reports only (`<outputPrefix>_bulk/*/report/*`);
* with `bulkSourceBuckets`, `s3:GetObject`/`s3:GetObjectVersion` on S3 Inventory reports in those buckets
  (`*/manifest.json`, `*/data/*.csv.gz`): an inventory as a manifest;
* with `encryption=kms`, use the storage key for those objects.

The worker reads the rows' images as it reads any job's (and the `bulkSourceBuckets`: infra/worker.py).
Creating a job (`s3control:CreateJob` plus `iam:PassRole` on this role) is the submitter's permission,
not the stack's.
"""
from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from img2img.core import bulk
from infra.config import PipelineConfig
from infra.functions import environment, function_role, pipeline_function

HANDLER = "img2img.handlers.bulk_enqueue.handler"
MEMORY_MB = 256
TIMEOUT_SECONDS = 30  # one SendMessage per task
PRINCIPAL = "batchoperations.s3.amazonaws.com"
# Where S3 Inventory writes in its destination bucket: `<prefix>/<source>/<config>/<date>/manifest.json`
# and `<prefix>/<source>/<config>/data/<uuid>.csv.gz`.
INVENTORY_PATTERNS = (f"*/{bulk.INVENTORY_MANIFEST_NAME}", "*/data/*.csv.gz")


def manifest_pattern(config: PipelineConfig) -> str:
    return f"{config.output_prefix}{bulk.BULK_DIR}/*/{bulk.MANIFEST_NAME}"


def overrides_pattern(config: PipelineConfig) -> str:
    return f"{config.output_prefix}{bulk.BULK_DIR}/*/{bulk.OVERRIDES_NAME}"


def report_pattern(config: PipelineConfig) -> str:
    return f"{config.output_prefix}{bulk.BULK_DIR}/*/{bulk.REPORT_DIR}/*"


class BulkJobs(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, input_bucket: s3.IBucket,
                 output_bucket: s3.IBucket, table: dynamodb.ITable, job_queue: sqs.IQueue,
                 key: kms.IKey | None) -> None:
        super().__init__(scope, construct_id)
        self.role = function_role(self, config, "bulk enqueue (S3 Batch Operations rows -> job messages)")
        settings = config.worker_settings(
            input_bucket=input_bucket.bucket_name, output_bucket=output_bucket.bucket_name,
            idempotency_table=table.table_name, job_queue_url=job_queue.queue_url, event_bus_name="")
        self.function, self.log_group = pipeline_function(
            self, "Function", config=config, role=self.role, environment=environment(config, settings),
            handler=HANDLER, description="S3 Batch Operations LambdaInvoke: one bulk row -> one job message",
            memory_mb=MEMORY_MB, timeout_seconds=TIMEOUT_SECONDS)
        self.role.add_to_policy(iam.PolicyStatement(
            sid="QueueBulkRows", actions=["sqs:SendMessage"], resources=[job_queue.queue_arn]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ReadBulkRowOverrides", actions=["s3:GetObject"],
            resources=[output_bucket.arn_for_objects(overrides_pattern(config))]))
        self.role.add_to_policy(iam.PolicyStatement(  # once per row: TransactWriteItems (Put + Update), then GetItem
            sid="CountRejectedBulkRows", actions=["dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:GetItem"],
            resources=[table.table_arn]))

        self.batch_role = iam.Role(
            self, "BatchOperationsRole", assumed_by=iam.ServicePrincipal(PRINCIPAL),
            description=f"{config.service_name} S3 Batch Operations: invoke the bulk enqueue function, read "
                        "bulk manifests, write their completion reports")
        self.batch_role.add_to_policy(iam.PolicyStatement(
            sid="InvokeBulkEnqueue", actions=["lambda:InvokeFunction"], resources=[self.function.function_arn]))
        self.batch_role.add_to_policy(iam.PolicyStatement(
            sid="ReadBulkManifests", actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=[output_bucket.arn_for_objects(manifest_pattern(config))]))
        if config.bulk_source_buckets:  # S3 Inventory reports as manifests: their manifest.json and data files
            self.batch_role.add_to_policy(iam.PolicyStatement(
                sid="ReadInventoryManifests", actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[f"arn:{Stack.of(self).partition}:s3:::{b}/{pattern}"
                           for b in config.bulk_source_buckets for pattern in INVENTORY_PATTERNS]))
        self.batch_role.add_to_policy(iam.PolicyStatement(
            sid="WriteBulkReports", actions=["s3:PutObject"],
            resources=[output_bucket.arn_for_objects(report_pattern(config))]))
        if key is not None:  # the buckets, table and queue are encrypted with the pipeline's key
            self.role.add_to_policy(iam.PolicyStatement(
                sid="UsePipelineKey", actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key.key_arn]))
            self.batch_role.add_to_policy(iam.PolicyStatement(
                sid="UsePipelineKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn]))
