"""boto3 clients with explicit retry and timeout settings, built on first use and reused.

Explicit, because the boto3 in a Lambda runtime may default to `legacy` or `standard` retries, and
Bedrock image calls take 30-90 s: a 60 s default read timeout would retry (and bill) them again.
Endpoints come only from the standard AWS_ENDPOINT_URL* variables, so the same code runs offline.
"""
from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from functools import cache

from botocore.exceptions import (
    ConnectionClosedError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

# Faults of the network, not of the request: transient for every service (read timeouts included).
NETWORK_FAULTS = (ConnectionError, ConnectTimeoutError, EndpointConnectionError, ConnectionClosedError,
                  ReadTimeoutError)

_lock = threading.Lock()


@contextmanager
def collector_paused():
    """Python's cyclic GC paused while boto3 loads (its import, service models, client classes), then
    what was made frozen. Those objects live as long as the process, yet the collector walked them
    again and again while they were being made: ~30 ms of a cold start (docs/performance.md §2).
    Frozen, later collections skip them. Nested or already paused: left as it is."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@cache
def _session():
    import boto3

    return boto3.session.Session()


@cache
def client(service: str, read_timeout: int = 30, max_attempts: int = 5, mode: str = "standard",
           region: str | None = None):
    """A shared client per service and settings (clients are thread-safe; sessions are not)."""
    from botocore.config import Config

    config = Config(
        retries={"mode": mode, "total_max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=read_timeout,
        tcp_keepalive=True,
        max_pool_connections=32,
    )
    with _lock, collector_paused():
        return _session().client(service, config=config, region_name=region or None)
