"""The stack: composes the constructs and exports what a user needs. No resources of its own."""
from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Stack
from constructs import Construct

from infra.api import HttpApi
from infra.bulk import BulkJobs
from infra.config import PipelineConfig
from infra.event_rules import EventRules
from infra.events import PipelineEvents
from infra.ingest import Ingest
from infra.lifecycle import LifecycleCheck
from infra.monitoring import Monitoring
from infra.provenance import Provenance
from infra.state import IdempotencyTable
from infra.storage import Storage
from infra.worker import Worker

STACK_NAME = "BedrockImg2Img"


class Img2ImgStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, **kwargs) -> None:
        super().__init__(scope, construct_id,
                         description="bedrock-img2img: S3 -> SQS -> Lambda -> Bedrock image-to-image -> S3",
                         **kwargs)
        self.config = config
        self.storage = Storage(self, "Storage", config=config)
        self.ingest = Ingest(self, "Ingest", config=config, input_bucket=self.storage.input_bucket)
        self.state = IdempotencyTable(self, "Idempotency", config=config, key=self.storage.key)
        self.events = PipelineEvents(self, "Events", config=config)
        self.provenance = Provenance(self, "Provenance", config=config)
        self.worker = Worker(
            self, "Worker", config=config,
            input_bucket=self.storage.input_bucket,
            output_bucket=self.storage.output_bucket,
            table=self.state.table,
            job_queue=self.ingest.job_queue,
            bus=self.events.bus,
            key=self.storage.key,
            provenance=self.provenance,
        )
        self.event_rules = EventRules(self, "EventRules", config=config, bus=self.events.bus,
                                      input_bucket=self.storage.input_bucket, job_queue=self.ingest.job_queue)
        self.api = HttpApi(
            self, "Api", config=config,
            input_bucket=self.storage.input_bucket,
            output_bucket=self.storage.output_bucket,
            table=self.state.table,
            job_queue=self.ingest.job_queue,
            bus=self.events.bus,
            key=self.storage.key,
        )
        self.bulk = BulkJobs(self, "Bulk", config=config, input_bucket=self.storage.input_bucket,
                             output_bucket=self.storage.output_bucket, table=self.state.table,
                             job_queue=self.ingest.job_queue, key=self.storage.key)
        self.bulk.grant_submit(self.api.function, self.api.role, config=config,
                               output_bucket=self.storage.output_bucket, table=self.state.table)
        self.bulk.add_event_submitter(config=config, role=self.api.role, environment=self.api.environment,
                                      bus=self.events.bus)
        self.lifecycle = LifecycleCheck(self, "LifecycleCheck", config=config, bus=self.events.bus)
        self.monitoring = Monitoring(
            self, "Monitoring", config=config,
            function=self.worker.function,
            job_queue=self.ingest.job_queue,
            dead_letter_queue=self.ingest.dead_letter_queue,
            direct_function=self.worker.direct_function,
            api_function=self.api.function,
            api_stage=self.api.api.deployment_stage,
            rules=self.event_rules.rules,
            key=self.storage.key,
        )

        dashboard_name = self.monitoring.dashboard.dashboard_name
        outputs = {
            "InputBucketName": (self.storage.input_bucket.bucket_name, "Drop images (and .json sidecars) here"),
            "OutputBucketName": (self.storage.output_bucket.bucket_name, "Generated images and JSON records"),
            "JobQueueUrl": (self.ingest.job_queue.queue_url, "Job queue (S3 notifications, deferred jobs)"),
            "DeadLetterQueueUrl": (self.ingest.dead_letter_queue.queue_url, "Jobs that failed repeatedly"),
            "IdempotencyTableName": (self.state.table.table_name, "Powertools idempotency records"),
            "EventBusName": (self.events.bus.event_bus_name, "ImageGenerationSucceeded / Failed events"),
            "WorkerFunctionName": (self.worker.function.function_name, "The worker Lambda"),
            "LifecycleCheckFunctionName": (self.lifecycle.function.function_name,
                                           "Daily model lifecycle check (docs/deploy.md)"),
            "DirectFunctionArn": (self.worker.direct_function.function_arn,
                                  "Direct-invoke Lambda for Step Functions (docs/events.md)"),
            "BulkFunctionArn": (self.bulk.function.function_arn,
                                "S3 Batch Operations LambdaInvoke target for bulk jobs (docs/bulk.md)"),
            "BulkRoleArn": (self.bulk.batch_role.role_arn, "The role bulk jobs' S3 Batch Operations jobs run as"),
            "DashboardName": (dashboard_name, "CloudWatch dashboard"),
            "DashboardUrl": (
                f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
                f"#dashboards:name={dashboard_name}",
                "CloudWatch dashboard in the console"),
        }
        if self.storage.log_bucket is not None:
            outputs["AccessLogBucketName"] = (self.storage.log_bucket.bucket_name, "S3 server access logs")
        outputs["ApiUrl"] = (self.api.api.url, "HTTP API base URL (docs/api.md)")
        outputs["ApiFunctionName"] = (self.api.function.function_name, "The HTTP API Lambda")
        if self.api.api_key is not None:
            outputs["ApiKeyId"] = (self.api.api_key.key_id, "aws apigateway get-api-key --include-value --api-key <id>")
        if self.provenance.key is not None:
            outputs["C2paSigningKeyArn"] = (self.provenance.key.key_arn, "KMS key that signs C2PA manifests: "
                                            "certify its public key, then set c2paCertificateChain "
                                            "(docs/provenance.md)")
        if self.monitoring.topic is not None:
            outputs["AlarmTopicArn"] = (self.monitoring.topic.topic_arn, "SNS topic the alarms notify")
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)
