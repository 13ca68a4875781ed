"""Custom metric names: published by the worker (observability.py), alarmed on by infra/monitoring.py."""

IMAGES_GENERATED = "ImagesGenerated"
IMAGES_FILTERED = "ImagesFiltered"
IMAGES_INVALID = "ImagesInvalid"
IMAGES_FAILED = "ImagesFailed"
BEDROCK_LATENCY = "BedrockLatency"  # milliseconds
BEDROCK_THROTTLES = "BedrockThrottles"  # every throttled attempt, botocore's retries included
EVENTS_FAILED = "EventsFailed"
INTERNAL_ERRORS = "InternalErrors"  # internal_error outcomes: defects, alarmed
QUOTA_WAITS = "QuotaWaits"  # model calls the per-model quota sent back to the queue (core/quota.py)
QUOTA_UNAVAILABLE = "QuotaLimiterUnavailable"  # the quota table failed: the call went ahead unmetered
