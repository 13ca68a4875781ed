"""The DynamoDB tables' key schema, once: the partition key and the TTL attribute every table of the
pipeline has (idempotency, job items, bulk counters, quota counters). They are Powertools idempotency's
own defaults, passed to it explicitly; infra/state.py and the local stack create the tables from them."""
from __future__ import annotations

PARTITION_KEY = "id"
TTL_ATTRIBUTE = "expiration"


def key(item_id: str) -> dict[str, dict[str, str]]:
    """The `Key` of one item, as the low-level DynamoDB client takes it."""
    return {PARTITION_KEY: {"S": item_id}}
