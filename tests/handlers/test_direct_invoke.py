"""Direct invoke: what a Step Functions task gets back."""
from __future__ import annotations

import pytest
from aws_world import INPUT, Context, png_bytes, sd35_ok


def invoke(event):
    from img2img.handlers import direct

    return direct.handler(event, Context())


def test_returns_the_success_record(world):
    world.put("sfn/cat.png", png_bytes((256, 256)))
    world.stub.add_response("invoke_model", sd35_ok(seed=8))
    record = invoke({"source": f"s3://{INPUT}/sfn/cat.png", "params": {"prompt": "a cat", "seed": 8},
                     "job_id": "sfn-1"})
    assert record["status"] == "succeeded" and record["job_id"] == "sfn-1" and record["seeds"] == [8]
    assert record["trigger"] == "direct"
    assert world.record("sfn/cat.png") == record


def test_permanent_failure_is_a_record_not_an_exception(world):
    world.put("sfn/bad.png", b"not an image")
    record = invoke({"source": {"bucket": INPUT, "key": "sfn/bad.png"}, "params": {"prompt": "x"}})
    assert record["status"] == "failed" and record["error"]["code"] == "invalid_image"


def test_transient_fault_raises_for_the_callers_retry_policy(world):
    from img2img.handlers.direct import TransientJobError

    world.put("sfn/busy.png", png_bytes((256, 256)))
    world.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    with pytest.raises(TransientJobError, match="throttled"):
        invoke({"source": f"s3://{INPUT}/sfn/busy.png", "params": {"prompt": "x"}})


def test_an_event_without_a_source_is_rejected_clearly(world):
    from img2img.handlers.direct import InvalidJobError

    with pytest.raises(InvalidJobError, match="needs a source"):
        invoke({"params": {"prompt": "x"}})
