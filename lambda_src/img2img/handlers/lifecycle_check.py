"""The daily lifecycle check (EventBridge schedule -> this function): every configured model's lifecycle,
region, access and quota, checked before a job fails on them.

Publishes one metric per problem kind (a count, 0 included, so the alarm recovers on its own) and one
`ModelLifecycleProblem` event per problem on the pipeline's bus; infra/monitoring.py alarms on the
kinds that stop jobs (img2img.lifecycle.ALARMED_KINDS). What to do when it fires: docs/deploy.md.
"""
from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from ..lifecycle import EVENT_DETAIL_TYPE, METRICS, Plan, check, counts
from ..observability import logger, metrics
from ..settings import ENV


def run(environ: dict[str, str] | None = None, reader=None, publisher=None) -> dict[str, Any]:
    """One check: facts, problems, metrics and events. `reader`/`publisher` are injectable for tests."""
    env = os.environ if environ is None else environ
    plan = Plan.from_env(env)
    if reader is None:
        from ..aws.lifecycle import LifecycleReader

        reader = LifecycleReader(plan.region)
    if publisher is None and env.get(ENV["event_bus_name"]):
        from ..aws.events import EventBridgePublisher

        publisher = EventBridgePublisher(env[ENV["event_bus_name"]])
    today = datetime.now(UTC).date()
    problems = check(reader.facts(plan), plan, today)
    for kind, count in counts(problems).items():
        metrics.add_metric(METRICS[kind], MetricUnit.Count, count)
    for problem in problems:
        detail = {**problem.as_event(), "region": plan.region, "checked_on": today.isoformat()}
        logger.warning("model lifecycle problem", extra=detail)
        if publisher is not None:
            publisher.publish(EVENT_DETAIL_TYPE, detail)
    return {"region": plan.region, "models": list(plan.models), "problems": [p.as_event() for p in problems]}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run()
