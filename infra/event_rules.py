"""EventBridge into the job queue (docs/events.md).

- `ImageGenerationRequested` on the pipeline's bus -> the job queue (the worker reads the envelope).
- `ingestMode=eventbridge`: the input bucket sends its events to EventBridge (default bus) and a rule
  forwards `Object Created` for the input bucket, except keys under the API prefix, to the job queue,
  instead of S3 -> SQS notifications (infra/ingest.py adds those only in `s3-notifications` mode).

The SqsQueue targets add queue-policy statements limited to each rule's ARN (aws:SourceArn).
"""
from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from img2img.core.triggers import REQUESTED_EVENT as REQUESTED_DETAIL_TYPE  # the one home of the name
from infra.config import PipelineConfig


class EventRules(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, bus: events.IEventBus,
                 input_bucket: s3.IBucket, job_queue: sqs.IQueue) -> None:
        super().__init__(scope, construct_id)
        self.requested = events.Rule(
            self, "RequestedToJobQueue",
            description=f"{config.service_name}: {REQUESTED_DETAIL_TYPE} events become jobs",
            event_bus=bus,
            event_pattern=events.EventPattern(detail_type=[REQUESTED_DETAIL_TYPE]),
            targets=[targets.SqsQueue(job_queue)],
        )
        # name -> (rule, its bus: None for the default bus), for the alarms (infra/monitoring.py)
        self.rules: dict[str, tuple[events.Rule, events.IEventBus | None]] = {"RequestedRule": (self.requested, bus)}
        self.object_created: events.Rule | None = None
        if config.ingest_mode == "eventbridge":
            input_bucket.enable_event_bridge_notification()
            self.object_created = events.Rule(
                self, "ObjectCreatedToJobQueue",
                description=f"{config.service_name}: uploads to the input bucket (EventBridge ingest mode)",
                event_pattern=events.EventPattern(
                    source=["aws.s3"], detail_type=["Object Created"],
                    detail={"bucket": {"name": [input_bucket.bucket_name]},
                            "object": {"key": [{"anything-but": {"prefix": config.api_prefix}}]}}),
                targets=[targets.SqsQueue(job_queue)],
            )
            self.rules["ObjectCreatedRule"] = (self.object_created, None)
