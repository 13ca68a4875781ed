"""The pipeline's EventBridge bus: the worker publishes ImageGenerationSucceeded / ImageGenerationFailed.

With `eventArchiveDays` > 0 the bus's events are also archived (replayable) for that many days.
"""
from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from constructs import Construct

from infra.config import PipelineConfig


class PipelineEvents(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus", description=f"{config.service_name} pipeline events")
        self.archive: events.Archive | None = None
        if config.event_archive_days > 0:
            self.archive = self.bus.archive(
                "Archive",
                description=f"{config.service_name} pipeline events",
                event_pattern=events.EventPattern(account=[self.bus.stack.account]),
                retention=Duration.days(config.event_archive_days),
            )
