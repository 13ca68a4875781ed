"""The worker Lambda: SQS event source, its own role with least-privilege statements, and its log group.

The environment is exactly `config.worker_settings(...).to_env()` merged with `config.powertools_env()`
(one source of truth for variable names: `lambda_src/img2img/settings.py`).

Bedrock permissions cover only `config.model_ids`:

* a foundation-model id  → `arn:<partition>:bedrock:<region>::foundation-model/<id>`
  (region = `bedrockRegion` context, or the stack's region);
* an inference-profile id (`us.`, `eu.`, `apac.`, `global.` prefix) → the profile's ARN
  `arn:<partition>:bedrock:<region>:<account>:inference-profile/<id>` plus the foundation model in every
  region the profile may route to (`INFERENCE_PROFILE_REGIONS`; `global.` routes anywhere, for which
  Bedrock uses the region-less `arn:<partition>:bedrock:::foundation-model/<id>`);
* an ARN → itself.
"""
from __future__ import annotations

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from infra.bundling import worker_code
from infra.config import PipelineConfig
from infra.storage import removal_policy

HANDLER = "img2img.handlers.sqs_worker.handler"
DIRECT_HANDLER = "img2img.handlers.direct.handler"

# Destination regions of the geographic cross-region inference profiles (Bedrock user guide,
# "Supported Regions and models for inference profiles"). A profile may route a request to any of
# them, and IAM evaluates InvokeModel on the foundation model in the region that serves it. Check
# the guide when adding a model: a profile's routing list can grow.
INFERENCE_PROFILE_REGIONS: dict[str, tuple[str, ...]] = {
    "us": ("us-east-1", "us-east-2", "us-west-2"),
    "eu": ("eu-central-1", "eu-west-1", "eu-west-3", "eu-north-1"),
    "apac": ("ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2"),
    "global": ("",),  # region-less foundation-model ARN
}

RUNTIMES = {"3.12": lambda_.Runtime.PYTHON_3_12, "3.13": lambda_.Runtime.PYTHON_3_13}
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}

# logs.RetentionDays member names for the day counts config.py accepts.
_RETENTION_NAMES = {
    "ONE_DAY": 1, "THREE_DAYS": 3, "FIVE_DAYS": 5, "ONE_WEEK": 7, "TWO_WEEKS": 14, "ONE_MONTH": 30,
    "TWO_MONTHS": 60, "THREE_MONTHS": 90, "FOUR_MONTHS": 120, "FIVE_MONTHS": 150, "SIX_MONTHS": 180,
    "ONE_YEAR": 365, "THIRTEEN_MONTHS": 400, "EIGHTEEN_MONTHS": 545, "TWO_YEARS": 731,
    "THREE_YEARS": 1096, "FIVE_YEARS": 1827, "SIX_YEARS": 2192, "SEVEN_YEARS": 2557,
    "EIGHT_YEARS": 2922, "NINE_YEARS": 3288, "TEN_YEARS": 3653,
}


def _retention(days: int) -> logs.RetentionDays:
    for name, value in _RETENTION_NAMES.items():
        if value == days:
            return getattr(logs.RetentionDays, name)
    raise ValueError(f"no CloudWatch Logs retention of {days} days")


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


class Worker(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 input_bucket: s3.IBucket, output_bucket: s3.IBucket, table: dynamodb.ITable,
                 job_queue: sqs.IQueue, bus: events.IEventBus, key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        runtime = RUNTIMES[config.python_version]

        # Own role, no managed policies: logging is granted on this construct's log groups only.
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"{config.service_name} worker")

        self.environment = {
            **config.worker_settings(
                input_bucket=input_bucket.bucket_name,
                output_bucket=output_bucket.bucket_name,
                idempotency_table=table.table_name,
                job_queue_url=job_queue.queue_url,
                event_bus_name=bus.event_bus_name,
            ).to_env(),
            **config.powertools_env(),
        }

        def function(name: str, log_name: str, handler: str, description: str):
            """A function on the shared bundle, role and settings, with a log group of its own."""
            log_group = logs.LogGroup(self, log_name,
                                      retention=_retention(config.log_retention_days),
                                      removal_policy=removal_policy(config))
            fn = lambda_.Function(
                self, name,
                description=f"{config.service_name}: {description}",
                code=worker_code(architecture=config.architecture, python_version=config.python_version,
                                 runtime=runtime),
                handler=handler,
                runtime=runtime,
                architecture=ARCHITECTURES[config.architecture],
                memory_size=config.worker_memory_mb,
                timeout=Duration.seconds(config.worker_timeout_seconds),
                environment=self.environment,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
                role=self.role,
            )
            log_group.grant_write(self.role)
            return fn, log_group

        self.function, self.log_group = function(
            "Function", "LogGroup", HANDLER, "S3 image + parameters -> Bedrock image-to-image -> output bucket")
        # Direct invoke (Step Functions, other services): same code, role and settings, its own logs.
        self.direct_function, self.direct_log_group = function(
            "DirectFunction", "DirectLogGroup", DIRECT_HANDLER, "job JSON in, outcome record out (direct invoke)")

        # ---- least-privilege statements -------------------------------------------------------
        region = config.bedrock_region or stack.region
        self.role.add_to_policy(iam.PolicyStatement(
            sid="InvokeConfiguredBedrockModels",
            actions=["bedrock:InvokeModel"],
            resources=bedrock_model_arns(config.model_ids, region=region, account=stack.account),
        ))
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
        self.role.add_to_policy(iam.PolicyStatement(
            sid="WriteAndReadOutputs",
            actions=["s3:PutObject", "s3:GetObject"],
            resources=[output_bucket.arn_for_objects("*")],
        ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="IdempotencyRecords",
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
            resources=[table.table_arn],
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
