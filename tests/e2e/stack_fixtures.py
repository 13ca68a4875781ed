"""What the local-stack tests share: a quiet stack with a short sidecar grace period, and waiting for a
job's outcome record as a client would (polling the output bucket)."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from img2img_local.project import load_pipeline_config
from img2img_local.stack import LocalStack


@contextmanager
def local_stack(grace_seconds: int) -> Iterator[LocalStack]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    config = load_pipeline_config([f"sidecarGraceSeconds={grace_seconds}", "logLevel=WARNING"])
    with LocalStack(config, visibility_timeout_seconds=10) as running:
        yield running


def wait_for_record(stack: LocalStack, key: str, timeout: float = 45) -> dict:
    s3 = stack.client("s3")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = s3.get_object(Bucket=stack.resources.output_bucket, Key=f"{key}.json")["Body"].read()
            return json.loads(body)
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    raise AssertionError(f"no outcome record for {key} within {timeout} s")
