"""Outcome records and where outputs go.

Key scheme (output bucket): an input `folder/cat.jpg` produces the image `<prefix>folder/cat.jpg.<format>`
and the record `<prefix>folder/cat.jpg.json`. Appending (rather than replacing) the extension keeps
`cat.jpg` and `cat.png` apart, and a record key can never equal an image key. A re-render overwrites
both; the record is always the truth about the latest job for that input.
"""
from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

SCHEMA = "bedrock-img2img/record/v1"
# Printable ASCII kept as is in metadata values; anything else (and %) is percent-encoded UTF-8.
_METADATA_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
MAX_KEY_BYTES = 1024          # S3's limit on an object key
MAX_METADATA_BYTES = 2048     # S3's limit on all user metadata names and values together
LONG_KEYS_DIR = "_long-keys/"  # where a record goes whose natural key would pass MAX_KEY_BYTES
EVENTS_DIR = "events/"         # the namespace ImageGenerationRequested jobs write under (docs/events.md)
STAGING_DIR = "_staging/"      # model answers checkpointed until their job's record is stored
# Bounds that keep every record writable whatever a job carried (prompts are at most 10,000 chars).
MAX_TEXT_CHARS = 20_000
MAX_ITEMS = 1_000
MAX_DEPTH = 24


def key_fits(key: str) -> bool:
    return len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


def output_keys(prefix: str, source_key: str, output_format: str) -> tuple[str, str]:
    """(image key, record key) for an input key."""
    base = f"{prefix}{source_key}"
    return f"{base}.{output_format}", record_key(prefix, source_key)


def record_key(prefix: str, source_key: str) -> str:
    """`<prefix><key>.json`; when that passes S3's key limit, `<prefix>_long-keys/<sha256 of key>.json`
    so that even a job whose input key is too long for its outputs gets its one failure record."""
    key = f"{prefix}{source_key}.json"
    if key_fits(key):
        return key
    digest = hashlib.sha256(source_key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}{LONG_KEYS_DIR}{digest}.json"


def staging_key(prefix: str, run_id: str) -> str:
    return f"{prefix}{STAGING_DIR}{run_id}"


def safe(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy: text made valid Unicode and bounded, non-finite numbers as null, depth and
    lengths bounded, anything else as its str(). The record writer cannot fail on content."""
    if isinstance(value, str):
        text = value if len(value) <= MAX_TEXT_CHARS else value[:MAX_TEXT_CHARS] + "…"
        return text.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {safe(str(k)): safe(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    if isinstance(value, (list, tuple)):
        return [safe(v, depth + 1) for v in value[:MAX_ITEMS]]
    return safe(str(value))


def to_json(record: dict[str, Any]) -> bytes:
    """Strict JSON (no NaN) of a record made safe: what the output bucket stores."""
    return json.dumps(safe(record), ensure_ascii=False, indent=2, allow_nan=False).encode("utf-8")


def metadata_value(value: str) -> str:
    """S3 metadata is ASCII: encode the rest so `urllib.parse.unquote` restores it exactly."""
    return quote(value, safe=_METADATA_SAFE)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def base_record(status: str, job_id: str, source: dict[str, Any], *, sidecar: dict | None = None,
                model_id: str | None = None, params: dict | None = None, sources: dict | None = None,
                attempt: int = 1, trigger: str = "upload") -> dict[str, Any]:
    """Fields both record kinds share, in a stable order (documented in docs/records.md)."""
    return {
        "schema": SCHEMA,
        "status": status,
        "job_id": job_id,
        "source": source,
        "sidecar": sidecar,
        "trigger": trigger,
        "model_id": model_id,
        "params": params or {},
        "param_sources": sources or {},
        "attempt": attempt,
        "finished_at": now_iso(),
    }


def success_record(common: dict[str, Any], *, request: dict[str, Any], seeds: list[int],
                   outputs: list[dict[str, Any]], input_info: dict[str, Any], prepared: dict[str, Any],
                   dropped: list[dict[str, Any]], timings_ms: dict[str, int]) -> dict[str, Any]:
    record = dict(common)
    record.update({
        "model_request": request,
        "seeds": seeds,
        "outputs": outputs,
        "input": input_info,
        "prepared": prepared,
        "dropped": dropped,
        "timings_ms": timings_ms,
        "error": None,
    })
    return record


def failure_record(common: dict[str, Any], error: dict[str, Any], timings_ms: dict[str, int] | None = None,
                   ) -> dict[str, Any]:
    record = dict(common)
    record.update({"outputs": [], "timings_ms": timings_ms or {}, "error": error})
    return record
