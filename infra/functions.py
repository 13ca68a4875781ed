"""The pipeline's Lambda functions, built one way: the worker bundle, the configured runtime and
architecture, X-Ray tracing, the settings as environment, and a log group of their own that only their
role may write (no managed policies). The worker, the direct-invoke function and the API differ only in
what the parameters say.
"""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from img2img.settings import Settings
from infra.bundling import worker_code
from infra.config import RETENTION_DAYS, PipelineConfig
from infra.storage import removal_policy

RUNTIMES = {"3.12": lambda_.Runtime.PYTHON_3_12, "3.13": lambda_.Runtime.PYTHON_3_13}
ARCHITECTURES = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}


def log_group(scope: Construct, construct_id: str, config: PipelineConfig) -> logs.LogGroup:
    """A log group with the configured retention and removal policy."""
    return logs.LogGroup(scope, construct_id,
                         retention=getattr(logs.RetentionDays, RETENTION_DAYS[config.log_retention_days]),
                         removal_policy=removal_policy(config))


def function_role(scope: Construct, config: PipelineConfig, what: str) -> iam.Role:
    """A role for Lambda with no managed policies: callers add least-privilege statements."""
    return iam.Role(scope, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                    description=f"{config.service_name} {what}")


def environment(config: PipelineConfig, settings: Settings) -> dict[str, str]:
    """The function's environment: its settings (img2img.settings names them) and Powertools'."""
    return {**settings.to_env(), **config.powertools_env()}


def pipeline_function(scope: Construct, construct_id: str, *, config: PipelineConfig, role: iam.IRole,
                      environment: dict[str, str], handler: str, description: str, memory_mb: int,
                      timeout_seconds: int, log_group_id: str = "LogGroup",
                      reserved_concurrency: int | None = None,
                      ) -> tuple[lambda_.Function, logs.LogGroup]:
    """A function on the worker bundle with its own log group, writable by `role`."""
    runtime = RUNTIMES[config.python_version]
    logs_ = log_group(scope, log_group_id, config)
    function = lambda_.Function(
        scope, construct_id,
        description=f"{config.service_name}: {description}",
        code=worker_code(architecture=config.architecture, python_version=config.python_version, runtime=runtime),
        handler=handler,
        runtime=runtime,
        architecture=ARCHITECTURES[config.architecture],
        memory_size=memory_mb,
        timeout=Duration.seconds(timeout_seconds),
        environment=environment,
        log_group=logs_,
        tracing=lambda_.Tracing.ACTIVE,
        role=role,
        reserved_concurrent_executions=reserved_concurrency if config.reserve_concurrency else None,
    )
    logs_.grant_write(role)
    return function, logs_
