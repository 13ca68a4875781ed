"""Outcome records and where outputs go.

Key scheme (output bucket): an input `folder/cat.jpg` produces the image `<prefix>folder/cat.jpg.<format>`
and the record `<prefix>folder/cat.jpg.json`. Appending (rather than replacing) the extension keeps
`cat.jpg` and `cat.png` apart, and a record key can never equal an image key. A re-render overwrites
both; the record is always the truth about the latest job for that input.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

SCHEMA = "bedrock-img2img/record/v1"
# Printable ASCII kept as is in metadata values; anything else (and %) is percent-encoded UTF-8.
_METADATA_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def output_keys(prefix: str, source_key: str, output_format: str) -> tuple[str, str]:
    """(image key, record key) for an input key."""
    base = f"{prefix}{source_key}"
    return f"{base}.{output_format}", f"{base}.json"


def record_key(prefix: str, source_key: str) -> str:
    return f"{prefix}{source_key}.json"


def metadata_value(value: str) -> str:
    """S3 metadata is ASCII: encode the rest so `urllib.parse.unquote` restores it exactly."""
    return quote(value, safe=_METADATA_SAFE)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
