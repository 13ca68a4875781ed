"""Powertools Logger, Metrics and Tracer: one instance each, shared by every module.

Service name, namespace and log level come from the POWERTOOLS_* variables the stack sets. Logs are
JSON with the job id as correlation id; image bytes are never logged and prompts only at DEBUG.
"""
from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="bedrock-img2img")
metrics = Metrics(namespace="BedrockImg2Img", service="bedrock-img2img")
tracer = Tracer(service="bedrock-img2img")

# Metric names (the CDK monitoring construct alarms on these).
IMAGES_GENERATED = "ImagesGenerated"
IMAGES_FILTERED = "ImagesFiltered"
IMAGES_INVALID = "ImagesInvalid"
IMAGES_FAILED = "ImagesFailed"
BEDROCK_LATENCY = "BedrockLatency"
BEDROCK_THROTTLES = "BedrockThrottles"
EVENTS_FAILED = "EventsFailed"

_INVALID_CODES = {"invalid_image", "image_too_large", "invalid_parameters", "missing_parameters"}


def count_outcome(record: dict) -> None:
    """One metric per outcome record, by what a dashboard wants to see."""
    if record.get("status") == "succeeded":
        metrics.add_metric(IMAGES_GENERATED, MetricUnit.Count, 1)
        return
    code = (record.get("error") or {}).get("code")
    if code == "content_filtered":
        metrics.add_metric(IMAGES_FILTERED, MetricUnit.Count, 1)
    elif code in _INVALID_CODES:
        metrics.add_metric(IMAGES_INVALID, MetricUnit.Count, 1)
    else:
        metrics.add_metric(IMAGES_FAILED, MetricUnit.Count, 1)


def log_fields(**fields) -> None:
    logger.info(fields.pop("message", ""), extra=fields)
