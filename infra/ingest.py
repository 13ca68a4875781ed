"""S3 → SQS: the job queue (with its dead-letter queue) and the input bucket's event notifications.

One OBJECT_CREATED notification per image suffix (as written and in upper case: S3 filters are
case-sensitive) and one for `.json` sidecars, all to the job queue. Outputs go to another bucket, so the
worker never triggers itself.
"""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import PipelineConfig, notification_suffixes

DLQ_RETENTION_DAYS = 14  # SQS's maximum: time to look at and redrive failed jobs
JOB_RETENTION_DAYS = 4


class Ingest(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 input_bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(DLQ_RETENTION_DAYS),
        )
        self.job_queue = sqs.Queue(
            self, "JobQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(config.queue_visibility_timeout_seconds),
            retention_period=Duration.days(JOB_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letter_queue,
                                                  max_receive_count=config.max_receive_count),
        )
        if config.ingest_mode != "s3-notifications":
            return  # ingestMode=eventbridge: infra/event_rules.py routes the bucket's events instead
        destination = s3n.SqsDestination(self.job_queue)
        for suffix in notification_suffixes():
            input_bucket.add_event_notification(s3.EventType.OBJECT_CREATED, destination,
                                                s3.NotificationKeyFilter(suffix=suffix))
