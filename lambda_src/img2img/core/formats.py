"""The output formats a job may ask for, and their content types: one table for the worker, the
model adapters, the settings check and the CDK config (no Pillow import here, so settings stay cheap)."""
from __future__ import annotations

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
OUTPUT_FORMATS = tuple(CONTENT_TYPES)  # ("png", "jpeg", "webp")
ALLOWED_TEXT = ", ".join(OUTPUT_FORMATS)
