"""Every outcome an uploaded image can have, through the real SQS handler (moto + stubbed Bedrock)."""
from __future__ import annotations

import io
import json

import pytest
from aws_world import INPUT, OUTPUT, SD35, SDXL, Context, bedrock_body, png_bytes, s3_body, sd35_ok, sdxl_ok, sqs_event
from PIL import Image

from img2img.core.images import prepare
from img2img.models.sd35 import SD35Adapter
from img2img.models.sdxl import SDXLAdapter


def invoke_params(model_id: str, body: dict) -> dict:
    return {"modelId": model_id, "body": json.dumps(body), "contentType": "application/json",
            "accept": "application/json"}


def prepared_b64(data: bytes, adapter, fit="crop") -> str:
    return prepare(data, adapter.target_size, fit, 40_000_000).base64


def test_metadata_job_sends_the_exact_sd35_body_and_stores_image_and_record(world):
    photo = world.sample("rocket.jpg")
    world.put("trips/rocket.jpg", photo, {"prompt": "a rocket launch at night", "seed": "11",
                                          "negative-prompt": "blurry", "image-strength": "0.3"})
    body = {"prompt": "a rocket launch at night", "negative_prompt": "blurry", "mode": "image-to-image",
            "image": prepared_b64(photo, SD35Adapter()), "strength": 0.7, "seed": 11, "output_format": "png"}
    world.stub.add_response("invoke_model", sd35_ok(seed=11), invoke_params(SD35, body))

    assert world.run(s3_body("trips/rocket.jpg")) == {"batchItemFailures": []}

    world.stub.assert_no_pending_responses()
    assert world.output_keys() == ["trips/rocket.jpg.json", "trips/rocket.jpg.png"]
    record = world.record("trips/rocket.jpg")
    assert record["status"] == "succeeded"
    assert record["source"]["bucket"] == INPUT and record["source"]["key"] == "trips/rocket.jpg"
    assert record["source"]["version_id"]
    assert record["seeds"] == [11]
    assert record["params"]["seed"] == 11
    assert record["param_sources"]["seed"] == "metadata x-amz-meta-seed"
    assert record["model_request"]["strength"] == 0.7
    assert record["outputs"][0]["key"] == "trips/rocket.jpg.png"
    assert record["input"]["width"] == 640 and record["prepared"]["width"] % 64 == 0
    head = world.s3.head_object(Bucket=OUTPUT, Key="trips/rocket.jpg.png")
    assert head["ContentType"] == "image/png"
    meta = head["Metadata"]
    assert meta["source-key"] == "trips/rocket.jpg" and meta["source-bucket"] == INPUT
    assert meta["model-id"] == SD35 and meta["seed"] == "11" and meta["job-id"] == record["job_id"]
    assert meta["source-version"] == record["source"]["version_id"]


def test_sidecar_with_the_aws_docs_sdxl_body_is_sent_exactly(world):
    photo = world.sample("coffee.png")
    sidecar = {"text_prompts": [{"text": "a cup of coffee on the moon", "weight": 1.0},
                                {"text": "text, watermark", "weight": -1.0}],
               "cfg_scale": 8, "seed": 5, "style_preset": "photographic", "steps": 30,
               "image_strength": 0.5, "model_id": SDXL}
    world.put("demo/coffee.png.json", sidecar)
    world.put("demo/coffee.png", photo)
    body = {"text_prompts": sidecar["text_prompts"], "init_image": prepared_b64(photo, SDXLAdapter()),
            "image_strength": 0.5, "cfg_scale": 8.0, "seed": 5, "steps": 30, "style_preset": "photographic"}
    world.stub.add_response("invoke_model", sdxl_ok(seed=5), invoke_params(SDXL, body))

    world.run(s3_body("demo/coffee.png"))

    record = world.record("demo/coffee.png")
    assert record["status"] == "succeeded", record["error"]
    assert record["sidecar"]["key"] == "demo/coffee.png.json"
    assert record["param_sources"]["cfg_scale"].startswith("sidecar s3://")


@pytest.mark.parametrize("key", ["my photo.png", "a+b.png", "100%.png", "日本/写真 ü+1.png", "deep/a b/c+d/e.png"])
def test_keys_with_spaces_plus_percent_and_unicode_are_decoded_once(world, key):
    world.put(key, png_bytes((300, 200)), {"prompt": "a test"})
    world.stub.add_response("invoke_model", sd35_ok())

    world.run(s3_body(key))

    record = world.record(key)
    assert record["status"] == "succeeded" and record["source"]["key"] == key
    assert f"{key}.png" in world.output_keys()


def test_invalid_parameter_writes_a_failure_record_naming_field_source_value_and_range(world):
    world.put("bad/rocket.jpg", world.sample("rocket.jpg"), {"prompt": "a rocket", "cfg-scale": "50",
                                                             "model-id": SDXL})
    assert world.run(s3_body("bad/rocket.jpg")) == {"batchItemFailures": []}  # permanent: not retried

    record = world.record("bad/rocket.jpg")
    assert record["status"] == "failed" and record["outputs"] == []
    error = record["error"]
    assert error["code"] == "invalid_parameters"
    assert "cfg_scale" in error["message"] and "metadata x-amz-meta-cfg-scale" in error["message"]
    assert "50" in error["message"] and "0 to 35" in error["message"]
    assert world.output_keys() == ["bad/rocket.jpg.json"]


@pytest.mark.parametrize("payload,code", [
    (b"", "invalid_image"),
    (b"this is not an image at all", "invalid_image"),
    (png_bytes((200, 200))[:60], "invalid_image"),
])
def test_unreadable_images_fail_with_invalid_image(world, payload, code):
    world.put("x/broken.png", payload, {"prompt": "anything"})
    world.run(s3_body("x/broken.png"))
    record = world.record("x/broken.png")
    assert record["status"] == "failed" and record["error"]["code"] == code
    assert record["error"]["message"]


def test_image_over_the_byte_limit_is_refused_before_download(world, monkeypatch):
    from img2img import assembly, settings

    monkeypatch.setenv("IMG2IMG_MAX_INPUT_BYTES", "1000")
    settings.get_settings.cache_clear()
    world.pipeline.settings = settings.get_settings()
    world.put("big.png", png_bytes((400, 400), (1, 2, 3)) + b"\0" * 2000, {"prompt": "x"})
    world.run(s3_body("big.png"))
    error = world.record("big.png")["error"]
    assert error["code"] == "image_too_large" and "1,000 bytes" in error["message"]
    assert assembly.get_pipeline() is world.pipeline


@pytest.mark.parametrize("model,response,reason", [
    (SD35, bedrock_body({"seeds": [1], "finish_reasons": ["Filter reason: output image"]}), "Filter reason: output image"),  # noqa: E501
    (SDXL, bedrock_body({"result": "success", "artifacts": [{"seed": 1, "base64": "", "finishReason": "CONTENT_FILTERED"}]}), "CONTENT_FILTERED"),  # noqa: E501
])
def test_filtered_output_is_a_failure_never_a_stored_image(world, model, response, reason):
    world.put("f/cat.png", png_bytes((256, 256)), {"prompt": "a cat", "model-id": model})
    world.stub.add_response("invoke_model", response)
    world.run(s3_body("f/cat.png"))
    record = world.record("f/cat.png")
    assert record["error"]["code"] == "content_filtered" and reason in record["error"]["message"]
    assert world.output_keys() == ["f/cat.png.json"]


@pytest.mark.parametrize("error_code,status,message,expected", [
    ("ValidationException", 400, "invalid_prompts: Prompt contains blocked words", "content_filtered"),
    ("ResourceNotFoundException", 404, "This model version has reached the end of its life.", "model_retired"),
    ("AccessDeniedException", 403, "You don't have access to the model", "access_denied"),
    ("ValidationException", 400, "invalid_sdxl_v1_dimensions", "invalid_parameters"),
])
def test_permanent_bedrock_errors_write_the_failure_at_once(world, error_code, status, message, expected):
    world.put("p/cat.png", png_bytes((256, 256)), {"prompt": "a cat"})
    world.stub.add_client_error("invoke_model", service_error_code=error_code, service_message=message,
                                http_status_code=status)
    assert world.run(s3_body("p/cat.png")) == {"batchItemFailures": []}
    record = world.record("p/cat.png")
    assert record["error"]["code"] == expected and message.split(":")[0] in record["error"]["message"]


@pytest.mark.parametrize("error_code,status", [
    ("ThrottlingException", 429), ("ServiceQuotaExceededException", 400), ("ModelTimeoutException", 408),
    ("ModelErrorException", 424), ("InternalServerException", 500), ("ServiceUnavailableException", 503),
])
def test_transient_bedrock_errors_return_the_message_and_write_nothing(world, error_code, status):
    world.put("t/cat.png", png_bytes((256, 256)), {"prompt": "a cat"})
    world.stub.add_client_error("invoke_model", service_error_code=error_code, http_status_code=status)
    assert world.run(s3_body("t/cat.png")) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    assert world.output_keys() == []


def test_last_attempt_of_a_transient_fault_records_retries_exhausted(world):
    world.put("t/cat.png", png_bytes((256, 256)), {"prompt": "a cat"})
    world.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    # IMG2IMG_MAX_RECEIVE_COUNT is 3: the third receive is the last before the DLQ.
    assert world.run(s3_body("t/cat.png"), receive_count=3) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    record = world.record("t/cat.png")
    assert record["status"] == "failed"
    assert record["error"]["code"] == "retries_exhausted" and record["error"]["cause"] == "throttled"
    assert record["attempt"] == 3


def test_a_redelivery_after_exhaustion_can_still_succeed_and_replace_the_record(world):
    world.put("t/cat.png", png_bytes((256, 256)), {"prompt": "a cat"})
    world.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    world.run(s3_body("t/cat.png"), receive_count=3)
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(s3_body("t/cat.png"), receive_count=1)  # e.g. redriven from the DLQ
    assert world.record("t/cat.png")["status"] == "succeeded"


def test_model_not_enabled_in_the_deployment_is_rejected_without_a_call(world):
    world.put("m/cat.png", png_bytes((256, 256)), {"prompt": "a cat", "model-id": "amazon.nova-canvas-v1:0"})
    world.run(s3_body("m/cat.png"))
    error = world.record("m/cat.png")["error"]
    assert error["code"] == "invalid_parameters" and "model_id" in error["message"]
    assert "not enabled" in error["message"]


def test_sd35_rejects_sdxl_only_fields_unless_strict_is_false(world):
    world.put("s/cat.png", png_bytes((256, 256)), {"prompt": "a cat", "style-preset": "anime"})
    world.run(s3_body("s/cat.png"))
    error = world.record("s/cat.png")["error"]
    assert error["code"] == "invalid_parameters" and "style_preset" in error["message"]
    assert "strict" in error["message"]

    world.put("s/cat.png.json", {"strict": False})
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(s3_body("s/cat.png.json"))
    record = world.record("s/cat.png")
    assert record["status"] == "succeeded"
    assert record["dropped"] == [{"field": "style_preset", "source": "metadata x-amz-meta-style-preset",
                                  "value": "anime"}]
    assert "style_preset" not in record["model_request"]


def test_output_format_jpeg_is_requested_and_stored_as_jpeg(world):
    world.put("o/cat.png", png_bytes((256, 256)), {"prompt": "a cat", "output-format": "jpeg"})
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buffer, "JPEG")
    world.stub.add_response("invoke_model", sd35_ok(image=buffer.getvalue()))
    world.run(s3_body("o/cat.png"))
    record = world.record("o/cat.png")
    assert record["model_request"]["output_format"] == "jpeg"
    assert record["outputs"][0]["key"] == "o/cat.png.jpeg"
    assert world.s3.head_object(Bucket=OUTPUT, Key="o/cat.png.jpeg")["ContentType"] == "image/jpeg"


def test_a_transient_fault_brings_the_message_back_after_a_backoff_not_the_queue_timeout(world):
    """The queue's visibility timeout is ~36 min in the stack; a throttled job comes back in seconds."""
    import time

    world.put("t/retry.png", png_bytes((256, 256)), {"prompt": "a cat"})
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=s3_body("t/retry.png"))
    [message] = world.sqs.receive_message(QueueUrl=world.queue_url, VisibilityTimeout=1)["Messages"]
    world.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    event = sqs_event(message["Body"])
    event["Records"][0]["receiptHandle"] = message["ReceiptHandle"]
    from img2img.handlers import sqs_worker

    assert sqs_worker.handler(event, Context()) == {"batchItemFailures": [{"itemIdentifier": "m0"}]}
    time.sleep(1.5)  # the 1 s visibility of the receive above has passed: the back-off (>= 10 s) holds it
    assert world.sqs.receive_message(QueueUrl=world.queue_url).get("Messages", []) == []


def test_no_bedrock_call_starts_that_the_function_timeout_would_cut_off(world):
    from img2img.handlers import sqs_worker

    class AlmostOutOfTime(Context):
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 100_000  # less than a 150 s Bedrock read timeout + storing

    world.put("t/late.png", png_bytes((256, 256)), {"prompt": "a cat"})
    response = sqs_worker.handler(sqs_event(s3_body("t/late.png")), AlmostOutOfTime())
    assert response == {"batchItemFailures": [{"itemIdentifier": "m0"}]}  # retried by a later delivery
    assert world.output_keys() == []  # and the Stubber saw no call
