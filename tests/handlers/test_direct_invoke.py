"""Direct invoke: what a Step Functions task gets back."""
from __future__ import annotations

import base64
import io

import pytest
from aws_world import INPUT, Context, model_calls, png_bytes, sd35_ok
from PIL import Image

from img2img.operations import BY_NAME


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


def test_inpaint_with_a_mask_key_sends_the_mask_to_the_inpaint_model(world):
    world.put("sfn/room.png", png_bytes((256, 256), color=(90, 60, 30)))
    world.put("masks/room-mask.png", png_bytes((128, 128), color=(255, 255, 255)))  # resized to the image
    calls = model_calls(world)
    world.stub.add_response("invoke_model", sd35_ok(seed=3), expected_params=None)
    record = invoke({"source": f"s3://{INPUT}/sfn/room.png", "params": {
        "operation": "inpaint", "mask": "../masks/room-mask.png", "prompt": "a green velvet sofa", "seed": 3}})
    assert record["status"] == "succeeded", record
    [call] = calls
    assert call["modelId"] == BY_NAME["inpaint"].default_model_id
    body = call["body"]
    assert set(body) == {"image", "mask", "prompt", "seed", "output_format"}
    assert (body["prompt"], body["seed"], body["output_format"]) == ("a green velvet sofa", 3, "png")
    image, mask = (Image.open(io.BytesIO(base64.b64decode(body[f]))) for f in ("image", "mask"))
    assert mask.mode == "L" and mask.size == image.size == (256, 256) and mask.getextrema() == (255, 255)
    assert record["operation"] == "inpaint" and record["companions"]["mask"]["key"] == "masks/room-mask.png"


def test_remove_background_needs_no_prompt_and_sends_only_the_image(world):
    world.put("sfn/cat.png", png_bytes((256, 256)))
    calls = model_calls(world)
    world.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    record = invoke({"source": {"bucket": INPUT, "key": "sfn/cat.png"}, "params": {"operation": "remove-background"}})
    assert record["status"] == "succeeded" and record["operation"] == "remove-background"
    [call] = calls
    assert call["modelId"] == BY_NAME["remove-background"].default_model_id
    assert set(call["body"]) == {"image", "output_format"} and call["body"]["output_format"] == "png"


def test_a_named_mask_that_does_not_exist_is_a_failure_record(world):
    world.put("sfn/room.png", png_bytes((256, 256)))
    record = invoke({"source": f"s3://{INPUT}/sfn/room.png",
                     "params": {"operation": "inpaint", "mask": "nope.png", "prompt": "x"}})
    assert record["status"] == "failed" and record["error"]["code"] == "missing_parameters"
    assert "sfn/nope.png" in record["error"]["message"]
