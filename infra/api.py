"""The HTTP API: API Gateway REST API -> its own Lambda (`img2img.handlers.api.handler`), docs/api.md.

- Auth: IAM (SigV4) on every method by default; `apiAuth=api-key` uses API keys with a usage plan.
- Per-stage throttling (`apiThrottleRateLimit`/`apiThrottleBurstLimit`), access logs (JSON) to a log
  group, X-Ray tracing, `image/*` as binary media, gateway responses in the API's error format.
- CORS preflight only when `apiCorsOrigins` is set (the function adds the response header itself).
- The function's role: least privilege for what the routes do (see the statements below).
"""
from __future__ import annotations

import json

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import PipelineConfig
from infra.functions import environment, function_role, log_group, pipeline_function

HANDLER = "img2img.handlers.api.handler"
STAGE = "prod"  # URLs: <ApiUrl>v1/generations, as on the local stack (<IMG2IMG_API_URL>/v1/...)
CORS_HEADERS = ["Content-Type", "Accept", "Authorization", "X-Amz-Date", "X-Amz-Security-Token",
                "X-Amz-Content-Sha256", "X-Api-Key", "Idempotency-Key"]
# API Gateway's own answers, in the API's error format (docs/api.md): {"error": {"code", "message"}}.
GATEWAY_RESPONSES = {
    "REQUEST_TOO_LARGE": ("413", "image_too_large",
                          "the request exceeds API Gateway's 10 MB: upload large images with POST /v1/uploads"),
    "THROTTLED": ("429", "throttled", "too many requests for this stage; retry later"),
    "QUOTA_EXCEEDED": ("429", "throttled", "this API key's quota is used up"),
    "INTEGRATION_TIMEOUT": ("504", "service_unavailable",
                            "the request took longer than 29 s; use POST /v1/jobs for long jobs"),
    # Lambda throttling the function (its reserved concurrency is used up) arrives as this; API Gateway
    # would answer a bare 500.
    "INTEGRATION_FAILURE": ("503", "service_unavailable",
                            "the API is at its concurrency limit or could not run; retry later"),
}


class HttpApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 input_bucket: s3.IBucket, output_bucket: s3.IBucket, table: dynamodb.ITable,
                 job_queue: sqs.IQueue, bus: events.IEventBus, key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)

        self.role = function_role(self, config, "HTTP API")
        self.environment = environment(config, config.api_settings(
            input_bucket=input_bucket.bucket_name, output_bucket=output_bucket.bucket_name,
            idempotency_table=table.table_name, job_queue_url=job_queue.queue_url,
            event_bus_name=bus.event_bus_name))
        self.function, self.log_group = pipeline_function(
            self, "Function", config=config, role=self.role, environment=self.environment, handler=HANDLER,
            description="HTTP API (sync generations, jobs, uploads)",
            memory_mb=config.api_memory_mb, timeout_seconds=config.api_timeout_seconds,
            reserved_concurrency=config.api_reserved_concurrency)

        # ---- least privilege ------------------------------------------------------------------------
        api_inputs = input_bucket.arn_for_objects(f"{config.api_prefix}*")
        uploads = input_bucket.arn_for_objects(f"{config.api_upload_prefix}*")
        statements = [
            # Inline images are stored under the API prefix (and removed again when rejected).
            iam.PolicyStatement(sid="WriteApiInputs", actions=["s3:PutObject", "s3:DeleteObject"],
                                resources=[api_inputs]),
            # Presigned uploads are signed with this role: it may put only under the upload prefix.
            iam.PolicyStatement(sid="PresignUploads", actions=["s3:PutObject"], resources=[uploads]),
            # The routes validate jobs as the worker will: source references, folder defaults and sidecars.
            iam.PolicyStatement(sid="ReadInputObjects", actions=["s3:GetObject", "s3:GetObjectVersion"],
                                resources=[input_bucket.arn_for_objects("*")]),
            iam.PolicyStatement(sid="ListInputForSidecars", actions=["s3:ListBucket"],
                                resources=[input_bucket.bucket_arn]),
            # Sync outputs go under <outputPrefix><apiPrefix>; records of any job are read for status.
            iam.PolicyStatement(sid="WriteApiOutputs", actions=["s3:PutObject"],
                                resources=[output_bucket.arn_for_objects(f"{config.output_prefix}{config.api_prefix}*")]),
            iam.PolicyStatement(sid="ReadOutputs", actions=["s3:GetObject"],
                                resources=[output_bucket.arn_for_objects("*")]),
            iam.PolicyStatement(sid="JobItemsAndIdempotency",
                                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                         "dynamodb:DeleteItem"], resources=[table.table_arn]),
            iam.PolicyStatement(sid="QueueJobs", actions=["sqs:SendMessage"], resources=[job_queue.queue_arn]),
            iam.PolicyStatement(sid="PublishPipelineEvents", actions=["events:PutEvents"],
                                resources=[bus.event_bus_arn]),
        ]
        if key is not None:
            statements.append(iam.PolicyStatement(
                sid="UsePipelineKey", actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[key.key_arn]))
        for statement in statements:
            self.role.add_to_policy(statement)

        # ---- the REST API ------------------------------------------------------------------------------
        self.access_logs = log_group(self, "AccessLogs", config)
        iam_auth = config.api_auth == "iam"
        cors = None
        if config.api_cors_origins:
            cors = apigw.CorsOptions(allow_origins=list(config.api_cors_origins), allow_methods=["GET", "POST"],
                                     allow_headers=CORS_HEADERS, expose_headers=["Location", "Retry-After"],
                                     max_age=Duration.hours(1))
        self.api = apigw.RestApi(
            self, "Api",
            description=f"{config.service_name} HTTP API (docs/api.md)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=["image/*"],
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
                tracing_enabled=True,
                throttling_rate_limit=config.api_throttle_rate_limit,
                throttling_burst_limit=config.api_throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True),
            ),
            default_cors_preflight_options=cors,
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM if iam_auth else apigw.AuthorizationType.NONE,
                api_key_required=not iam_auth,
            ),
        )
        self.api.node.try_remove_child("Endpoint")  # the stack's own ApiUrl output says it once
        self.validator = self.api.add_request_validator("Validator", validate_request_body=True,
                                                         validate_request_parameters=True)
        for response_type, (status, code, message) in GATEWAY_RESPONSES.items():
            self.api.add_gateway_response(
                f"{response_type.title().replace('_', '')}Response",
                type=getattr(apigw.ResponseType, response_type), status_code=status,
                templates={"application/json": json.dumps({"error": {"code": code, "message": message}})})

        integration = apigw.LambdaIntegration(self.function)
        v1 = self.api.root.add_resource("v1")  # the routes' paths are /v1/... in the handler too
        generations = v1.add_resource("generations")
        jobs = v1.add_resource("jobs")
        job = jobs.add_resource("{job_id}")
        uploads_resource = v1.add_resource("uploads")
        bulk_jobs = v1.add_resource("bulk-jobs")
        bulk_job = bulk_jobs.add_resource("{bulk_id}")
        self.methods = {
            "POST /generations": generations.add_method("POST", integration, request_validator=self.validator),
            "POST /jobs": jobs.add_method("POST", integration, request_validator=self.validator),
            "GET /jobs/{job_id}": job.add_method("GET", integration, request_validator=self.validator,
                                                 request_parameters={"method.request.path.job_id": True}),
            "POST /uploads": uploads_resource.add_method("POST", integration, request_validator=self.validator),
            # Bulk jobs (docs/bulk.md): the grants are infra/bulk.py's grant_submit.
            "POST /bulk-jobs": bulk_jobs.add_method("POST", integration, request_validator=self.validator),
            "GET /bulk-jobs/{bulk_id}": bulk_job.add_method("GET", integration, request_validator=self.validator,
                                                            request_parameters={"method.request.path.bulk_id": True}),
        }

        self.api_key: apigw.IApiKey | None = None
        if not iam_auth:
            plan = self.api.add_usage_plan(
                "UsagePlan", description=f"{config.service_name} API clients",
                throttle=apigw.ThrottleSettings(rate_limit=config.api_throttle_rate_limit,
                                                burst_limit=config.api_throttle_burst_limit))
            plan.add_api_stage(stage=self.api.deployment_stage)
            self.api_key = self.api.add_api_key("ApiKey", description=f"{config.service_name} default client key")
            plan.add_api_key(self.api_key)
