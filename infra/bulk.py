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
Creating a job (`s3:CreateJob` plus `iam:PassRole` on this role) is the submitter's permission:
`grant_submit` gives it to the functions that submit for callers (the API, the `SubmitBulkJob` event), with
the manifest writes and progress item.
"""
from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from img2img.core import bulk
from img2img.settings import ENV
from infra.config import PipelineConfig
from infra.functions import environment, function_role, pipeline_function

HANDLER = "img2img.handlers.bulk_enqueue.handler"
SUBMIT_HANDLER = "img2img.handlers.bulk_events.handler"
SUBMIT_TIMEOUT_SECONDS = 60      # read a manifest (up to 64 MB), validate its rows, one CreateJob
SUBMIT_MEMORY_MB = 512
SUBMIT_RESERVED_CONCURRENCY = 2  # submits are rare; each may read a large manifest
MEMORY_MB = 256
TIMEOUT_SECONDS = 30  # one SendMessage per task
PRINCIPAL = "batchoperations.s3.amazonaws.com"
# Where S3 Inventory writes in its destination bucket: `<prefix>/<source>/<config>/<date>/manifest.json`
# and `<prefix>/<source>/<config>/data/<uuid>.csv.gz`.
INVENTORY_PATTERNS = (f"*/{bulk.INVENTORY_MANIFEST_NAME}", "*/data/*.csv.gz")
# What a submitter may read in a bulkSourceBucket: manifests (CSV, JSONL) and inventory reports, not images.
SOURCE_MANIFEST_PATTERNS = ("*.csv", "*.jsonl", *INVENTORY_PATTERNS)


def manifest_pattern(config: PipelineConfig) -> str:
    return f"{config.output_prefix}{bulk.BULK_DIR}/*/{bulk.MANIFEST_NAME}"


def overrides_pattern(config: PipelineConfig) -> str:
    return f"{config.output_prefix}{bulk.BULK_DIR}/*/{bulk.OVERRIDES_NAME}"


def bulk_pattern(config: PipelineConfig) -> str:
    """Every bulk job's own objects: its CSV manifest and per-row overrides, written at submit."""
    return f"{config.output_prefix}{bulk.BULK_DIR}/*"


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

    def grant_submit(self, function: lambda_.Function, role: iam.IRole, *, config: PipelineConfig,
                     output_bucket: s3.IBucket, table: dynamodb.ITable) -> None:
        """Let `function` submit bulk jobs (img2img/bulk_submit.py): create the Batch Operations job that runs
        as this construct's role and invokes its enqueue function, store the manifest under `_bulk/`,
        write the progress item. Manifests are read where the function already reads (input, output), and in
        the bulkSourceBuckets the manifests and inventory reports only (SOURCE_MANIFEST_PATTERNS)."""
        function.add_environment(ENV["bulk_function_arn"], self.function.function_arn)
        function.add_environment(ENV["bulk_role_arn"], self.batch_role.role_arn)
        for statement in (
            # CreateJob has no resource type: it is granted on "*", and the job can only run as the role below.
            iam.PolicyStatement(sid="CreateBulkJobs", actions=["s3:CreateJob"], resources=["*"]),
            iam.PolicyStatement(sid="PassBulkRole", actions=["iam:PassRole"], resources=[self.batch_role.role_arn],
                                conditions={"StringEquals": {"iam:PassedToService": PRINCIPAL}}),
            iam.PolicyStatement(sid="WriteBulkManifests", actions=["s3:PutObject"],
                                resources=[output_bucket.arn_for_objects(bulk_pattern(config))]),
            iam.PolicyStatement(sid="BulkProgressItems", actions=["dynamodb:PutItem", "dynamodb:GetItem",
                                                                  "dynamodb:UpdateItem"], resources=[table.table_arn]),
        ):
            role.add_to_principal_policy(statement)
        if config.bulk_source_buckets:
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="ReadSourceManifests", actions=["s3:GetObject"],
                resources=[f"arn:{Stack.of(self).partition}:s3:::{b}/{pattern}"
                           for b in config.bulk_source_buckets for pattern in SOURCE_MANIFEST_PATTERNS]))

    def add_event_submitter(self, *, config: PipelineConfig, role: iam.IRole, environment: dict[str, str],
                            bus: events.IEventBus) -> None:
        """`SubmitBulkJob` on the pipeline's bus -> its own function (handlers/bulk_events.py), on the API's role
        and settings (the same submit grants, `grant_submit`; it publishes the answer on the bus)."""
        self.submit_function, self.submit_log_group = pipeline_function(
            self, "SubmitFunction", config=config, role=role, log_group_id="SubmitLogGroup",
            environment={**environment, ENV["bulk_function_arn"]: self.function.function_arn,
                         ENV["bulk_role_arn"]: self.batch_role.role_arn},
            handler=SUBMIT_HANDLER, description="SubmitBulkJob events -> bulk jobs (S3 Batch Operations)",
            memory_mb=SUBMIT_MEMORY_MB, timeout_seconds=SUBMIT_TIMEOUT_SECONDS,
            reserved_concurrency=SUBMIT_RESERVED_CONCURRENCY)
        self.submit_rule = events.Rule(
            self, "SubmitRule", description=f"{config.service_name}: {bulk.SUBMIT_EVENT} events become bulk jobs",
            event_bus=bus, event_pattern=events.EventPattern(detail_type=[bulk.SUBMIT_EVENT]),
            targets=[targets.LambdaFunction(self.submit_function, retry_attempts=2,
                                            max_event_age=Duration.hours(1))])
