"""The worker Lambda: SQS event source, its own role with least-privilege statements, and its log group.

The environment is exactly `config.worker_settings(...).to_env()` merged with `config.powertools_env()`
(one source of truth for variable names: `lambda_src/img2img/settings.py`).

Bedrock permissions cover only `config.model_ids` (image-to-image's models and the enabled operations'):

* a foundation-model id  → `arn:<partition>:bedrock:<region>::foundation-model/<id>`
  (region = `bedrockRegion` context, or the stack's region when it is empty: checked at synth against
  infra/regions.py, so IAM never names a region that does not serve the model);
* an inference-profile id (`us.`, `eu.`, `apac.`, `global.` prefix) → the profile's ARN
  `arn:<partition>:bedrock:<region>:<account>:inference-profile/<id>` plus the foundation model in every
  region the profile may route to (`infra.regions.INFERENCE_PROFILE_REGIONS`; `global.` routes anywhere, for which
  Bedrock uses the region-less `arn:<partition>:bedrock:::foundation-model/<id>`);
* an ARN → itself.
"""
from __future__ import annotations

from aws_cdk import Annotations, Aws, Duration, Stack, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from img2img.core.records import STAGING_DIR
from infra.config import PipelineConfig
from infra.functions import environment, function_role, pipeline_function
from infra.provenance import Provenance
from infra.regions import INFERENCE_PROFILE_REGIONS
from infra.state import QuotaTable

HANDLER = "img2img.handlers.sqs_worker.handler"
DIRECT_HANDLER = "img2img.handlers.direct.handler"


def bedrock_model_arns(model_ids: tuple[str, ...], *, region: str, account: str,
                       partition: str = Aws.PARTITION) -> list[str]:
    """The resources `bedrock:InvokeModel` needs for these model ids (see the module docstring)."""
    arns: list[str] = []
    for model_id in model_ids:
        if model_id.startswith("arn:"):
            arns.append(model_id)
            continue
        prefix, _, base_id = model_id.partition(".")
        if prefix in INFERENCE_PROFILE_REGIONS and base_id:
            arns.append(f"arn:{partition}:bedrock:{region}:{account}:inference-profile/{model_id}")
            arns.extend(f"arn:{partition}:bedrock:{r}::foundation-model/{base_id}"
                        for r in INFERENCE_PROFILE_REGIONS[prefix])
        else:
            arns.append(f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}")
    return list(dict.fromkeys(arns))


def checkpoint_pattern(config: PipelineConfig) -> str:
    """The output keys of the worker's model-answer checkpoints (core/records.staging_key)."""
    return f"{config.output_prefix}{STAGING_DIR}*"


class Worker(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 input_bucket: s3.IBucket, output_bucket: s3.IBucket, table: dynamodb.ITable,
                 job_queue: sqs.IQueue, bus: events.IEventBus, key: kms.IKey | None = None,
                 provenance: Provenance | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        # One role for both functions (same code, same grants); each has a log group of its own.
        self.role = function_role(self, config, "worker")
        # Per-model request budgets shared by every sandbox (core/quota.py): only when modelQuotas is set.
        self.quota = QuotaTable(self, "Quota", config=config, key=key) if config.model_quotas else None
        self.environment = environment(config, config.worker_settings(
            input_bucket=input_bucket.bucket_name,
            output_bucket=output_bucket.bucket_name,
            idempotency_table=table.table_name,
            job_queue_url=job_queue.queue_url,
            event_bus_name=bus.event_bus_name,
            c2pa_kms_key_id=provenance.signing_key_arn if provenance else "",
            quota_table=self.quota.table.table_name if self.quota else "",
        ))
        shared = {"config": config, "role": self.role, "environment": self.environment,
                  "memory_mb": config.worker_memory_mb, "timeout_seconds": config.worker_timeout_seconds}
        self.function, self.log_group = pipeline_function(
            self, "Function", handler=HANDLER, log_group_id="LogGroup",
            description="S3 image + parameters -> Bedrock image-to-image -> output bucket", **shared)
        # Direct invoke (Step Functions, other services): same code, role and settings, its own logs.
        self.direct_function, self.direct_log_group = pipeline_function(
            self, "DirectFunction", handler=DIRECT_HANDLER, log_group_id="DirectLogGroup",
            description="job JSON in, outcome record out (direct invoke)",
            reserved_concurrency=config.direct_reserved_concurrency, **shared)

        # ---- least-privilege statements -------------------------------------------------------
        # Bedrock in a policy of its own: with the Image Services it lists ~50 ARNs, and in the default
        # policy CDK's size estimate (150 characters per ARN with a token) would split that policy into
        # overflow managed policies. Role inline policies share IAM's 10,240-character quota either way.
        # Raises ConfigError (app.py prints it in one line) if that region cannot invoke a configured model.
        checked = config.check_bedrock_region(None if Token.is_unresolved(stack.region) else stack.region)
        region = checked or stack.region
        if checked is None:
            Annotations.of(self).add_warning_v2(
                "img2img:bedrockRegionUnchecked", "bedrockRegion is empty and the stack has no region: the "
                "functions call Bedrock in the region you deploy to, unchecked against infra/regions.py")
        self.bedrock_policy = iam.Policy(self, "BedrockPolicy", statements=[iam.PolicyStatement(
            sid="InvokeConfiguredBedrockModels",
            actions=["bedrock:InvokeModel"],
            resources=bedrock_model_arns(config.invoked_model_ids, region=region, account=stack.account),
        )])
        self.bedrock_policy.attach_to_role(self.role)
        for function in (self.function, self.direct_function):
            function.node.add_dependency(self.bedrock_policy)  # no invocation before its grant exists
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ReadInputObjects",
            actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=[input_bucket.arn_for_objects("*")],
        ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ListInputForSidecars",
            actions=["s3:ListBucket"],
            resources=[input_bucket.bucket_arn],
        ))
        if config.bulk_source_buckets:  # bulk jobs' other source buckets (docs/bulk.md): read like the input
            self.role.add_to_policy(iam.PolicyStatement(
                sid="ReadBulkSourceObjects",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[f"arn:{stack.partition}:s3:::{b}/*" for b in config.bulk_source_buckets],
            ))
            self.role.add_to_policy(iam.PolicyStatement(
                sid="ListBulkSources",  # without it a missing object is 403, not source_not_found
                actions=["s3:ListBucket"],
                resources=[f"arn:{stack.partition}:s3:::{b}" for b in config.bulk_source_buckets],
            ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="WriteAndReadOutputs",
            actions=["s3:PutObject", "s3:GetObject"],
            resources=[output_bucket.arn_for_objects("*")],
        ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="DropOwnCheckpoints",  # a model answer is kept under _staging/ until its record is stored
            actions=["s3:DeleteObject"],
            resources=[output_bucket.arn_for_objects(checkpoint_pattern(config))],
        ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="IdempotencyRecords",  # and bulk jobs' counters and rows' outcomes (TransactWriteItems: Put+Update)
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            resources=[table.table_arn],
        ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ReadBulkRowOutcomes",  # a finished bulk job's report (core/bulk.py): 100 rows a call
            actions=["dynamodb:BatchGetItem"],
            resources=[table.table_arn],
        ))
        if self.quota is not None:
            self.role.add_to_policy(iam.PolicyStatement(
                sid="PerModelQuota",  # a ticket per model call, the shared rate (lowered by UpdateItem)
                actions=["dynamodb:UpdateItem", "dynamodb:GetItem"],
                resources=[self.quota.table.table_arn],
            ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="PublishPipelineEvents",
            actions=["events:PutEvents"],
            resources=[bus.event_bus_arn],
        ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="DeferJobsOnOwnQueue",
            actions=["sqs:SendMessage"],
            resources=[job_queue.queue_arn],
        ))
        if provenance is not None:
            provenance.grant_signing(self.role)
        if key is not None:
            self.role.add_to_policy(iam.PolicyStatement(
                sid="UsePipelineKey",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[key.key_arn],
            ))

        self.event_source = sources.SqsEventSource(
            job_queue,
            batch_size=config.batch_size,
            max_batching_window=Duration.seconds(config.batch_window_seconds),
            report_batch_item_failures=True,
            max_concurrency=config.event_source_max_concurrency,
        )
        self.function.add_event_source(self.event_source)
