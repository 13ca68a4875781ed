"""Powertools Logger, Metrics and Tracer: one instance each, shared by every module.

Service name, namespace and log level come from the POWERTOOLS_* variables the stack sets. Logs are
JSON with the job id as correlation id; image bytes are never logged and prompts only at DEBUG.
"""
from __future__ import annotations

from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from .metric_names import (  # noqa: F401
    BEDROCK_LATENCY,
    BEDROCK_THROTTLES,
    EVENTS_FAILED,
    IMAGES_FAILED,
    IMAGES_FILTERED,
    IMAGES_GENERATED,
    IMAGES_INVALID,
    INTERNAL_ERRORS,
)


class _Untraced(BaseSegment):
    def close(self, end_time=None): pass
    def add_subsegment(self, subsegment): pass
    def remove_subsegment(self, subsegment): pass
    def put_annotation(self, key, value): pass
    def put_metadata(self, key, value, namespace="default"): pass
    def add_exception(self, exception, stack, remote=False): pass


class _NoTracing(BaseProvider):
    """The provider of a disabled Tracer. Powertools builds the X-Ray recorder even when tracing is off
    (no daemon, POWERTOOLS_TRACE_DISABLED, outside Lambda), and importing aws_xray_sdk.core costs ~100 ms
    of cold start (docs/performance.md); a disabled tracer only needs subsegments that do nothing."""

    @contextmanager
    def in_subsegment(self, name=None, **kwargs):
        yield _Untraced()

    in_subsegment_async = in_subsegment
    def put_annotation(self, key, value): pass
    def put_metadata(self, key, value, namespace="default"): pass
    def patch(self, modules): pass
    def patch_all(self): pass


def _tracer(service: str) -> Tracer:
    if Tracer._is_tracer_disabled():
        return Tracer(service=service, disabled=True, provider=_NoTracing())
    # Tracing on (X-Ray active in Lambda): patch botocore only, not every library X-Ray knows of.
    return Tracer(service=service, patch_modules=("botocore",))


logger = Logger(service="bedrock-img2img")
metrics = Metrics(namespace="BedrockImg2Img", service="bedrock-img2img")
tracer = _tracer("bedrock-img2img")

def count_outcome(record: dict) -> None:
    """One metric per outcome record, the one its error code names (core/errors.py)."""
    from .core.errors import metric_for

    if record.get("status") == "succeeded":
        metrics.add_metric(IMAGES_GENERATED, MetricUnit.Count, 1)
        return
    metrics.add_metric(metric_for((record.get("error") or {}).get("code")), MetricUnit.Count, 1)


def report_outcome(record: dict) -> None:
    """Count and log one outcome; a replayed one (idempotency hit) was counted when it happened."""
    replayed = bool(record.get("replayed"))
    if not replayed:
        count_outcome(record)
    logger.info("job replayed (already done)" if replayed else "job finished",
                extra={"job_id": record["job_id"], "status": record["status"],
                       "source_key": record["source"]["key"],
                       "error_code": (record.get("error") or {}).get("code")})
