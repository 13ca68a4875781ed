"""EventBridge as the core's EventPublisher. A failed publish is logged and counted, never fatal:
the record in S3 is the outcome; events are notifications about it."""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from ..observability import EVENTS_FAILED, logger, metrics, tracer
from .clients import client

EVENT_SOURCE = "bedrock-img2img"


class EventBridgePublisher:
    def __init__(self, bus_name: str, events=None):
        self.bus_name = bus_name
        self._events = events

    @property
    def events(self):
        if self._events is None:
            self._events = client("events")
        return self._events

    @tracer.capture_method(capture_response=False)
    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        entry = {"Source": EVENT_SOURCE, "DetailType": detail_type, "EventBusName": self.bus_name,
                 "Detail": json.dumps(detail, ensure_ascii=False)}
        try:
            response = self.events.put_events(Entries=[entry])
            failed = response.get("FailedEntryCount", 0)
        except (ClientError, BotoCoreError) as exc:
            failed, response = 1, {"error": str(exc)}
        if failed:
            metrics.add_metric(EVENTS_FAILED, MetricUnit.Count, 1)
            logger.error("could not publish the outcome event", extra={"detail_type": detail_type,
                                                                        "job_id": detail.get("job_id"),
                                                                        "response": str(response)[:500]})
