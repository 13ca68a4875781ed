"""A tiny Lambda handler that the event-source tests drive instead of the real worker.

Each message body is an instruction: "fail" (reported in batchItemFailures), "raise" (the whole
invocation raises), "sleep:<seconds>", anything else succeeds. Every invocation appends one JSON line to
$ESM_TEST_DIR/invocations.jsonl with what it saw, including how many invocations were in flight (marker
files present while it ran).
"""
import json
import os
import time
import uuid
from pathlib import Path

PROCESS_TOKEN = uuid.uuid4().hex  # differs per sandbox: proves isolation and reuse
INVOCATIONS_IN_THIS_PROCESS = 0


def handler(event, context):
    global INVOCATIONS_IN_THIS_PROCESS  # noqa: PLW0603
    INVOCATIONS_IN_THIS_PROCESS += 1
    out = Path(os.environ["ESM_TEST_DIR"])
    marker = out / f"in-flight-{context.aws_request_id}"
    marker.touch()
    try:
        in_flight = len(list(out.glob("in-flight-*")))
        records = event["Records"]
        sleep = max([float(r["body"].split(":", 1)[1]) for r in records if r["body"].startswith("sleep:")],
                    default=0.0)
        time.sleep(sleep)
        line = {
            "request_id": context.aws_request_id,
            "pid": os.getpid(),
            "process_token": PROCESS_TOKEN,
            "invocation_in_process": INVOCATIONS_IN_THIS_PROCESS,
            "in_flight": in_flight,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "env_marker": os.environ.get("ESM_TEST_MARKER"),
            "records": records,
        }
        with open(out / "invocations.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
    finally:
        marker.unlink()
    if any(r["body"] == "raise" for r in records):
        raise RuntimeError("told to raise")
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records if r["body"] == "fail"]}


def noop(event, context):
    """Succeeds without side effects: for tests that only need a live worker process."""
    return {"batchItemFailures": []}
