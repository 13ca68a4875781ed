"""The engine speaks bedrock-runtime's wire protocol: real boto3 sees Bedrock's exceptions, codes and shapes."""
import urllib.parse
from base64 import b64decode, b64encode

import pytest
from PIL import Image

from img2img_local.engine import ERRORS
from tests.e2e.engine_fixtures import (  # noqa: F401 (fixtures)
    SD35,
    SDXL,
    b64,
    bedrock_client,
    client,
    decode,
    fresh,
    http,
    invoke,
    sample,
    sd35_body,
    sdxl_body,
    server,
)

pytestmark = pytest.mark.e2e

SQUARE_B64 = b64(sample("astronaut.png", (1024, 1024)))
SMALL_B64 = b64(sample("chelsea.png", (96, 64)))




def test_sdxl_answer_has_exactly_bedrocks_shape(client):
    answer = invoke(client, SDXL, sdxl_body(SQUARE_B64))
    assert set(answer) == {"result", "artifacts"} and answer["result"] == "success"
    [artifact] = answer["artifacts"]
    assert set(artifact) == {"seed", "base64", "finishReason"}
    assert artifact["seed"] == 42 and artifact["finishReason"] == "SUCCESS"


def test_sd35_answer_has_exactly_bedrocks_shape(client):
    answer = invoke(client, SD35, sd35_body(SMALL_B64))
    assert set(answer) == {"seeds", "finish_reasons", "images"}
    assert answer["seeds"] == [42] and answer["finish_reasons"] == [None] and len(answer["images"]) == 1


@pytest.mark.parametrize("model_id", [
    "us.stability.sd3-5-large-v1:0",
    "eu.stability.sd3-5-large-v1:0",
    "apac.stability.sd3-5-large-v1:0",
    "global.stability.sd3-5-large-v1:0",
    "arn:aws:bedrock:us-west-2::foundation-model/stability.sd3-5-large-v1:0",
    "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.stability.sd3-5-large-v1:0",
])
def test_inference_profiles_and_arns_reach_the_base_model(server, client, model_id):
    answer = invoke(client, model_id, sd35_body(SMALL_B64))
    assert answer["finish_reasons"] == [None]
    assert server.stats()["by_model"] == {SD35: {"success": 1}}


def test_unknown_model_is_resource_not_found(client):
    with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
        invoke(client, "stability.sd4-ultra-v9:0", {"prompt": "x"})
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "stability.sd4-ultra-v9:0" in caught.value.response["Error"]["Message"]


@pytest.mark.parametrize("name", list(ERRORS))
def test_each_error_surfaces_as_its_boto3_exception(client, name):
    status, message = ERRORS[name]
    with pytest.raises(getattr(client.exceptions, name)) as caught:
        invoke(client, SD35, sd35_body(SMALL_B64), headers={"x-img2img-fault": name})
    response = caught.value.response
    assert response["Error"]["Code"] == name
    assert response["Error"]["Message"] == message
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert response["ResponseMetadata"]["RequestId"]


def test_model_error_carries_original_status_and_resource(client):
    with pytest.raises(client.exceptions.ModelErrorException) as caught:
        invoke(client, SD35, sd35_body(SMALL_B64), headers={"x-img2img-fault": "ModelErrorException"})
    assert caught.value.response["originalStatusCode"] == 500
    assert caught.value.response["resourceName"].endswith(f"foundation-model/{SD35}")


def test_raw_error_wire_format(server):
    url = f"{server.url}/model/{urllib.parse.quote(SD35, safe='')}/invoke"
    status, headers, body = http("POST", url, {"prompt": "x", "cfg_scale": 7})
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    assert headers["Content-Type"] == "application/json" and headers["x-amzn-RequestId"]
    assert set(body) == {"message"} and "cfg_scale" in body["message"]


def test_body_over_25_mb_is_rejected_and_connection_survives(client):
    with pytest.raises(client.exceptions.ValidationException) as caught:
        invoke(client, SD35, b"x" * 25_000_001)
    assert "25000000" in caught.value.response["Error"]["Message"]
    assert invoke(client, SD35, sd35_body(SMALL_B64))["finish_reasons"] == [None]


def test_bedrock_headers_are_accepted_and_ignored(client):
    answer = invoke(client, SD35, sd35_body(SMALL_B64), headers={
        "X-Amzn-Bedrock-Trace": "ENABLED", "X-Amzn-Bedrock-GuardrailIdentifier": "abc123",
        "X-Amzn-Bedrock-GuardrailVersion": "1", "X-Amzn-Bedrock-PerformanceConfig-Latency": "standard"})
    assert answer["finish_reasons"] == [None]


def test_malformed_json_is_a_validation_error(client):
    with pytest.raises(client.exceptions.ValidationException) as caught:
        invoke(client, SDXL, "{not json")
    assert "not JSON" in caught.value.response["Error"]["Message"]


BAD_SDXL = [
    ({"text_prompts": None}, ["text_prompts", "required"]),
    ({"text_prompts": []}, ["text_prompts", "empty"]),
    ({"text_prompts": [{"text": ""}]}, ["invalid_prompts", "text_prompts/0/text"]),
    ({"text_prompts": [{"text": "   "}]}, ["invalid_prompts", "blank"]),
    ({"text_prompts": [{"text": "x" * 2001}]}, ["text_prompts/0/text", "2000", "2001"]),
    ({"text_prompts": [{"text": "a cat", "weight": "heavy"}]}, ["weight", "'heavy'"]),
    ({"text_prompts": [{"text": "a cat", "colour": "red"}]}, ["colour", "extraneous"]),
    ({"cfg_scale": 50}, ["cfg_scale", "50", "35"]),
    ({"cfg_scale": "7"}, ["cfg_scale", "'7'", "number"]),
    ({"image_strength": 1.5}, ["image_strength", "1.5"]),
    ({"samples": 2}, ["invalid_samples", "samples", "2"]),
    ({"samples": True}, ["invalid_samples", "True"]),
    ({"seed": -1}, ["seed", "-1"]),
    ({"seed": 4294967296}, ["seed", "4294967296"]),
    ({"steps": 5}, ["steps", "5", "10"]),
    ({"steps": 30.5}, ["steps", "30.5", "integer"]),
    ({"style_preset": "watercolor"}, ["style_preset", "watercolor"]),
    ({"sampler": "EULER"}, ["sampler", "EULER"]),
    ({"clip_guidance_preset": "FAST"}, ["clip_guidance_preset", "FAST"]),
    ({"init_image_mode": "STRENGTH"}, ["init_image_mode", "STRENGTH"]),
    ({"negative_prompt": "blurry"}, ["negative_prompt", "extraneous"]),
    ({"init_image": None}, ["init_image", "required"]),
    ({"init_image": SMALL_B64}, ["invalid_sdxl_v1_dimensions", "96x64", "1024x1024"]),
    ({"init_image": b64(Image.new("RGB", (1024, 1024), "red"), "GIF")}, ["invalid_mime_type", "init_image"]),
    ({"init_image": "data:image/png;base64," + SQUARE_B64[:64]}, ["invalid_mime_type", "data:"]),
]


@pytest.mark.parametrize("changes, expected", BAD_SDXL, ids=[",".join(c) for c, _ in BAD_SDXL])
def test_sdxl_rejects_what_bedrock_rejects(client, changes, expected):
    body = {k: v for k, v in {**sdxl_body(SQUARE_B64), **changes}.items() if v is not None}
    with pytest.raises(client.exceptions.ValidationException) as caught:
        invoke(client, SDXL, body)
    message = caught.value.response["Error"]["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    for fragment in expected:
        assert fragment in message, (fragment, message)


BAD_SD35 = [
    ({"prompt": None}, ["prompt", "required"]),
    ({"prompt": ""}, ["invalid_prompts", "prompt"]),
    ({"prompt": "x" * 10001}, ["prompt", "10000", "10001"]),
    ({"negative_prompt": "x" * 10001}, ["negative_prompt", "10000"]),
    ({"cfg_scale": 7}, ["cfg_scale", "extraneous"]),
    ({"style_preset": "anime"}, ["style_preset", "extraneous"]),
    ({"steps": 30}, ["steps", "extraneous"]),
    ({"samples": 1}, ["samples", "extraneous"]),
    ({"mode": "img2img"}, ["mode", "img2img"]),
    ({"mode": None}, ["image", "text-to-image"]),
    ({"image": None}, ["image", "required", "image-to-image"]),
    ({"strength": None}, ["strength", "required"]),
    ({"strength": 1.2}, ["strength", "1.2"]),
    ({"aspect_ratio": "16:9"}, ["aspect_ratio", "16:9", "image-to-image"]),
    ({"image": b64(sample("coffee.png", (63, 100)))}, ["image", "63x100", "64"]),
    ({"image": b64(sample("coffee.png", (96, 64)), "BMP")}, ["invalid_mime_type", "image"]),
    ({"image": b64encode(b64decode(SMALL_B64)[:120]).decode()}, ["invalid_image", "#/image"]),
    ({"image": b64encode(b64decode(SMALL_B64)[:6000]).decode()}, ["invalid_image", "#/image", "truncated"]),
    ({"output_format": "gif"}, ["output_format", "gif"]),
    ({"seed": 4294967295}, ["seed", "4294967295"]),
]


@pytest.mark.parametrize("changes, expected", BAD_SD35, ids=[",".join(c) for c, _ in BAD_SD35])
def test_sd35_rejects_what_bedrock_rejects(client, changes, expected):
    body = {k: v for k, v in {**sd35_body(SMALL_B64), **changes}.items() if v is not None}
    with pytest.raises(client.exceptions.ValidationException) as caught:
        invoke(client, SD35, body)
    message = caught.value.response["Error"]["Message"]
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_sd35_text_to_image_without_image_fields_is_accepted(client):
    answer = invoke(client, SD35, {"prompt": "a red fox at night", "aspect_ratio": "16:9", "seed": 3})
    image = decode(answer["images"][0])
    assert image.width > image.height and image.width * image.height > 900_000


def test_standard_retry_mode_retries_429_and_the_engine_counts_each_attempt(server):
    server.configure(error_rates={"ThrottlingException": 1.0})
    retrying = bedrock_client(server.url, total_attempts=3)
    with pytest.raises(retrying.exceptions.ThrottlingException) as caught:
        invoke(retrying, SD35, sd35_body(SMALL_B64))
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert server.stats()["by_model"][SD35] == {"ThrottlingException": 3}


def test_standard_retry_mode_does_not_retry_validation_errors(server):
    retrying = bedrock_client(server.url, total_attempts=3)
    with pytest.raises(retrying.exceptions.ValidationException):
        invoke(retrying, SD35, {"prompt": "x", "steps": 30})
    assert server.stats()["total"] == 1


def test_unknown_paths_are_404(server):
    status, headers, body = http("GET", f"{server.url}/model/{SD35}/invoke")
    assert status == 404 and "UnknownOperationException" in headers["x-amzn-ErrorType"]
    assert "GET" in body["message"]
