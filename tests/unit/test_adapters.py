"""Model adapters: exact request bodies, response parsing, Bedrock error mapping, model ids, sizes."""
from __future__ import annotations

import base64
import io
import json
import math

import boto3
import botocore.response
import imagegen as g
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from img2img.aws.bedrock import BedrockInvoker, classify
from img2img.core import images
from img2img.core import params as P
from img2img.core.errors import JobError
from img2img.core.model_api import base_model_id
from img2img.models.registry import adapter_for
from img2img.models.sd35 import SD35Adapter
from img2img.models.sdxl import SIZES, SDXLAdapter

SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"
SIDECAR_URI = "s3://in/cat.jpg.json"
IMG = "QUJD"  # stands for the base64 PNG


def job(model_id, sidecar=None, metadata=None, defaults=None, output_format="png"):
    layers = [P.deployment_layer(model_id, output_format, "", {})]
    if defaults:
        layers.append(P.folder_defaults_layer(defaults, "s3://in/_defaults.json"))
    if metadata:
        layers.extend(P.metadata_layers(metadata)[0])
    if sidecar is not None:
        layers.append(P.sidecar_layer(sidecar, SIDECAR_URI))
    merged = P.merge(layers)
    return adapter_for(model_id).validate(model_id, merged)


def body_text(model_id, image=IMG, **sources) -> str:
    params = job(model_id, **sources)
    return json.dumps(adapter_for(model_id).build_body(params, image))


# ---- SDXL bodies ----------------------------------------------------------------------------------

SDXL_FULL = {
    "text_prompts": [{"text": "a cat in a spacesuit", "weight": 1}, {"text": "blurry", "weight": -0.8}],
    "init_image_mode": "IMAGE_STRENGTH", "image_strength": 0.45, "cfg_scale": 9,
    "clip_guidance_preset": "FAST_GREEN", "sampler": "K_EULER_ANCESTRAL", "samples": 1, "seed": 1234,
    "steps": 40, "style_preset": "cinematic", "extras": {"foo": 1},
}
SDXL_FULL_TEXT = (
    '{"text_prompts": [{"text": "a cat in a spacesuit", "weight": 1.0}, {"text": "blurry", "weight": -0.8}], '
    '"init_image": "QUJD", "init_image_mode": "IMAGE_STRENGTH", "image_strength": 0.45, "cfg_scale": 9.0, '
    '"clip_guidance_preset": "FAST_GREEN", "sampler": "K_EULER_ANCESTRAL", "samples": 1, "seed": 1234, '
    '"steps": 40, "style_preset": "cinematic", "extras": {"foo": 1}}'
)


def test_sdxl_body_with_every_field_of_the_contract():
    assert body_text(SDXL, sidecar=SDXL_FULL) == SDXL_FULL_TEXT


def test_sdxl_body_field_order_does_not_depend_on_the_sidecar_order():
    shuffled = dict(reversed(list(SDXL_FULL.items())))
    assert body_text(SDXL, sidecar=shuffled) == SDXL_FULL_TEXT


def test_sdxl_minimal_body_uses_the_default_image_strength():
    assert body_text(SDXL, metadata={"prompt": "a cat"}) == (
        '{"text_prompts": [{"text": "a cat", "weight": 1.0}], "init_image": "QUJD", "image_strength": 0.35}')


def test_sdxl_body_from_metadata_strings_is_typed():
    text = body_text(SDXL, metadata={"prompt": "a cat", "negative-prompt": "blurry", "cfg-scale": "7",
                                     "steps": "30", "seed": "42", "image-strength": "0.6"})
    assert text == ('{"text_prompts": [{"text": "a cat", "weight": 1.0}, {"text": "blurry", "weight": -1.0}], '
                    '"init_image": "QUJD", "image_strength": 0.6, "cfg_scale": 7.0, "seed": 42, "steps": 30}')


def test_sdxl_step_schedule_body():
    text = body_text(SDXL, sidecar={"prompt": "a cat", "init_image_mode": "STEP_SCHEDULE",
                                    "step_schedule_start": 0.6, "step_schedule_end": 0.1})
    assert text == ('{"text_prompts": [{"text": "a cat", "weight": 1.0}], "init_image": "QUJD", '
                    '"init_image_mode": "STEP_SCHEDULE", "step_schedule_start": 0.6, "step_schedule_end": 0.1}')


def test_sdxl_maps_sd35_strength_to_image_strength():
    params = job(SDXL, sidecar={"prompt": "a cat", "strength": 0.7})
    assert params.request == {"text_prompts": [{"text": "a cat", "weight": 1.0}], "image_strength": 0.3}


def test_sdxl_body_has_no_pipeline_fields():
    params = job(SDXL, sidecar={"prompt": "a cat", "fit": "pad", "restore_aspect": True, "output_format": "webp",
                                "strict": False, "mode": "image-to-image"})
    body = SDXLAdapter().build_body(params, IMG)
    assert set(body) == {"text_prompts", "init_image", "image_strength"}
    assert (params.fit, params.restore_aspect, params.output_format) == ("pad", True, "webp")


# ---- SD3.5 bodies ---------------------------------------------------------------------------------

def test_sd35_minimal_body_with_the_default_strength():
    assert body_text(SD35, metadata={"prompt": "a cat"}) == (
        '{"prompt": "a cat", "mode": "image-to-image", "image": "QUJD", "strength": 0.65, "output_format": "png"}')


def test_sd35_body_with_every_field():
    text = body_text(SD35, sidecar={"prompt": "a cat", "negative_prompt": "blurry", "strength": 0.4,
                                    "seed": 42, "output_format": "webp", "mode": "image-to-image"})
    assert text == ('{"prompt": "a cat", "negative_prompt": "blurry", "mode": "image-to-image", "image": "QUJD", '
                    '"strength": 0.4, "seed": 42, "output_format": "webp"}')


def test_sd35_maps_an_sdxl_vocabulary_job():
    sidecar = {"text_prompts": [{"text": "a cat", "weight": 1}, {"text": "in space", "weight": 1.0},
                                {"text": "blurry", "weight": -1}, {"text": "text", "weight": -1.0}],
               "image_strength": 0.3, "seed": 42, "samples": 1, "init_image_mode": "IMAGE_STRENGTH"}
    text = body_text(SD35, sidecar=sidecar, output_format="jpeg")
    assert text == ('{"prompt": "a cat, in space", "negative_prompt": "blurry, text", "mode": "image-to-image", '
                    '"image": "QUJD", "strength": 0.7, "seed": 42, "output_format": "jpeg"}')


@pytest.mark.parametrize("image_strength, strength", [(0.0, 1.0), (1.0, 0.0), (0.35, 0.65), (0.8, 0.2)])
def test_sd35_strength_is_one_minus_image_strength(image_strength, strength):
    params = job(SD35, sidecar={"prompt": "a cat", "image_strength": image_strength})
    assert params.request["strength"] == strength


def test_sd35_strength_from_metadata_wins_over_folder_image_strength():
    params = job(SD35, defaults={"image_strength": 0.9}, metadata={"prompt": "a cat", "strength": "0.25"})
    assert params.request["strength"] == 0.25


def test_sd35_seed_zero_is_sent():
    assert job(SD35, sidecar={"prompt": "a cat", "seed": 0}).request["seed"] == 0


STRICT_CASES = [
    ({"style_preset": "anime"}, "style_preset"),
    ({"cfg_scale": 7}, "cfg_scale"),
    ({"steps": 30}, "steps"),
    ({"sampler": "K_EULER"}, "sampler"),
    ({"clip_guidance_preset": "FAST_BLUE"}, "clip_guidance_preset"),
    ({"extras": {"a": 1}}, "extras"),
    ({"init_image_mode": "STEP_SCHEDULE", "step_schedule_start": 0.6}, "step_schedule_start"),
    ({"init_image_mode": "STEP_SCHEDULE"}, "init_image_mode"),
    ({"text_prompts": [{"text": "a cat", "weight": 0.5}]}, "text_prompts[].weight"),
    ({"text_prompts": [{"text": "a cat"}, {"text": "dogs", "weight": -2}]}, "text_prompts[].weight"),
]


@pytest.mark.parametrize("extra, field", STRICT_CASES)
def test_sd35_strict_rejects_fields_without_an_equivalent(extra, field):
    with pytest.raises(JobError) as info:
        job(SD35, sidecar={"prompt": "a cat", **extra})
    err = info.value
    assert err.code == "invalid_parameters"
    assert field in {e["field"] for e in err.details["errors"]}
    assert "no equivalent on SD3.5 Large" in err.message or "no prompt weights" in err.message
    assert '"strict": false' in err.message
    assert f"sidecar {SIDECAR_URI}" in err.message


@pytest.mark.parametrize("extra, field", STRICT_CASES)
def test_sd35_non_strict_drops_them_and_lists_them(extra, field):
    params = job(SD35, sidecar={"prompt": "a cat", "strict": False, **extra})
    assert field in {d["field"] for d in params.dropped}
    for entry in params.dropped:
        assert entry["source"] == f"sidecar {SIDECAR_URI}"
    body = SD35Adapter().build_body(params, IMG)
    assert set(body) <= {"prompt", "negative_prompt", "mode", "image", "strength", "seed", "output_format"}


def test_sd35_non_strict_from_metadata_string_and_dropped_values():
    params = job(SD35, metadata={"prompt": "a cat", "strict": "false", "cfg-scale": "9", "steps": "20"})
    assert params.dropped == [
        {"field": "cfg_scale", "source": "metadata x-amz-meta-cfg-scale", "value": "9"},
        {"field": "steps", "source": "metadata x-amz-meta-steps", "value": "20"},
    ]
    assert params.request == {"prompt": "a cat", "mode": "image-to-image", "strength": 0.65, "output_format": "png"}


def test_sd35_non_strict_keeps_prompt_text_of_weighted_parts():
    params = job(SD35, sidecar={"strict": False, "text_prompts": [{"text": "a cat", "weight": 0.7},
                                                                  {"text": "fur", "weight": 1.3},
                                                                  {"text": "blurry", "weight": -0.4}]})
    assert params.request["prompt"] == "a cat, fur"
    assert params.request["negative_prompt"] == "blurry"
    assert params.dropped == [{"field": "text_prompts[].weight", "source": f"sidecar {SIDECAR_URI}",
                               "value": [0.7, 1.3, -0.4]}]


def test_sd35_strict_job_reports_every_unmappable_field_at_once():
    with pytest.raises(JobError) as info:
        job(SD35, sidecar={"prompt": "a cat", "cfg_scale": 7, "steps": 30, "style_preset": "anime"})
    assert {e["field"] for e in info.value.details["errors"]} == {"cfg_scale", "steps", "style_preset"}


# ---- Bedrock through botocore's Stubber ---------------------------------------------------------------

def stubbed():
    client = boto3.client("bedrock-runtime", region_name="us-west-2", aws_access_key_id="x",
                          aws_secret_access_key="x")
    return client, Stubber(client), BedrockInvoker(runtime=client)


def response(payload: dict) -> dict:
    raw = json.dumps(payload).encode()
    return {"body": botocore.response.StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"}


def expected(model_id: str, text: str) -> dict:
    return {"modelId": model_id, "body": text, "contentType": "application/json", "accept": "application/json"}


def png_b64(color=g.GREEN, size=(64, 64)) -> str:
    return base64.b64encode(g.encode(g.solid(size, color), "PNG")).decode()


def test_sdxl_request_on_the_wire_is_exactly_the_contract():
    client, stubber, invoker = stubbed()
    params = job(SDXL, sidecar=SDXL_FULL)
    answer = {"result": "success", "artifacts": [{"seed": 1234, "base64": png_b64(), "finishReason": "SUCCESS"}]}
    stubber.add_response("invoke_model", response(answer), expected(SDXL, SDXL_FULL_TEXT))
    with stubber:
        payload = invoker.invoke(SDXL, SDXLAdapter().build_body(params, IMG))
    stubber.assert_no_pending_responses()
    result = SDXLAdapter().parse_response(payload)
    assert result.seeds == [1234] and result.image_format == "png"
    assert g.decode(result.images[0]).getpixel((5, 5)) == g.GREEN


@pytest.mark.parametrize("model_id", [SD35, "us.stability.sd3-5-large-v1:0",
                                      "arn:aws:bedrock:us-west-2:123456789012:inference-profile/"
                                      "us.stability.sd3-5-large-v1:0"])
def test_sd35_request_on_the_wire_keeps_the_given_model_id(model_id):
    client, stubber, invoker = stubbed()
    params = job(model_id, sidecar={"prompt": "a cat", "negative_prompt": "blurry", "image_strength": 0.3,
                                    "seed": 42})
    text = ('{"prompt": "a cat", "negative_prompt": "blurry", "mode": "image-to-image", "image": "QUJD", '
            '"strength": 0.7, "seed": 42, "output_format": "png"}')
    answer = {"seeds": [42], "finish_reasons": [None], "images": [png_b64(g.BLUE)]}
    stubber.add_response("invoke_model", response(answer), expected(model_id, text))
    with stubber:
        result = SD35Adapter().parse_response(invoker.invoke(model_id, SD35Adapter().build_body(params, IMG)))
    stubber.assert_no_pending_responses()
    assert result.seeds == [42]
    assert g.decode(result.images[0]).getpixel((1, 1)) == g.BLUE


@pytest.mark.parametrize("model_id", [SDXL, SD35])
def test_real_photo_end_to_end_body_through_the_stubber(model_id):
    adapter = adapter_for(model_id)
    params = job(model_id, metadata={"prompt": "an astronaut, oil painting", "seed": "7"})
    prepared = images.prepare(g.sample_bytes("rocket.jpg"), adapter.target_size, params.fit)
    body = adapter.build_body(params, prepared.base64)
    client, stubber, invoker = stubbed()
    if model_id == SDXL:
        answer = {"result": "success", "artifacts": [{"seed": 7, "base64": png_b64(), "finishReason": "SUCCESS"}]}
    else:
        answer = {"seeds": [7], "finish_reasons": [None], "images": [png_b64()]}
    stubber.add_response("invoke_model", response(answer), expected(model_id, json.dumps(body)))
    with stubber:
        payload = invoker.invoke(model_id, body)
    stubber.assert_no_pending_responses()
    assert adapter.parse_response(payload).seeds == [7]
    sent = base64.b64decode(body[adapter.image_field], validate=True)
    assert sent.startswith(b"\x89PNG") and g.decode(sent).size == adapter.target_size(640, 427)


ERRORS = [
    ("ValidationException", 400, "Your request was rejected: invalid_prompts", "content_filtered", False),
    ("ValidationException", 400, "Malformed input request: #/cfg_scale: 50 is not less or equal to 35",
     "invalid_parameters", False),
    ("ServiceQuotaExceededException", 400, "Quota exceeded", "quota_exceeded", True),
    ("AccessDeniedException", 403, "You don't have access to the model", "access_denied", False),
    ("ResourceNotFoundException", 404, "This model version has reached the end of its life.",
     "model_retired", False),
    ("ResourceNotFoundException", 404, "The requested resource could not be found.", "model_unavailable", False),
    ("ModelTimeoutException", 408, "Model timed out", "model_timeout", True),
    ("ModelErrorException", 424, "The model failed", "model_error", True),
    ("ThrottlingException", 429, "Too many requests", "throttled", True),
    ("ModelNotReadyException", 429, "Model is not ready", "throttled", True),
    ("InternalServerException", 500, "Internal error", "service_error", True),
    ("ServiceUnavailableException", 503, "Unavailable", "service_error", True),
]


@pytest.mark.parametrize("name, status, message, code, retryable", ERRORS)
def test_bedrock_errors_map_to_job_errors(name, status, message, code, retryable):
    client, stubber, invoker = stubbed()
    body = {"prompt": "a cat", "mode": "image-to-image", "image": IMG, "strength": 0.65, "output_format": "png"}
    stubber.add_client_error("invoke_model", service_error_code=name, service_message=message,
                             http_status_code=status, expected_params=expected(SD35, json.dumps(body)))
    with stubber, pytest.raises(JobError) as info:
        invoker.invoke(SD35, body)
    stubber.assert_no_pending_responses()
    assert (info.value.code, info.value.retryable) == (code, retryable)
    if code != "content_filtered":
        assert SD35 in info.value.message
    if not retryable:
        assert message in info.value.message


def test_read_timeout_is_a_retryable_model_timeout():
    err = classify(ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-west-2.amazonaws.com"), SD35)
    assert (err.code, err.retryable) == ("model_timeout", True)


@pytest.mark.parametrize("raw", [b"<html>502</html>", b"[1, 2]", b""])
def test_a_body_that_is_not_a_json_object_is_a_retryable_model_error(raw):
    client, stubber, invoker = stubbed()
    stubber.add_response("invoke_model", {"body": botocore.response.StreamingBody(io.BytesIO(raw), len(raw)),
                                          "contentType": "application/json"})
    with stubber, pytest.raises(JobError) as info:
        invoker.invoke(SD35, {"prompt": "a"})
    assert (info.value.code, info.value.retryable) == ("model_error", True)


# ---- response parsing -----------------------------------------------------------------------------

def test_sdxl_success_response():
    result = SDXLAdapter().parse_response({"result": "success", "artifacts": [
        {"seed": 99, "base64": png_b64(g.RED), "finishReason": "SUCCESS"}]})
    assert result.seeds == [99] and result.image_format == "png"
    assert g.decode(result.images[0]).getpixel((0, 0)) == g.RED


def test_sdxl_content_filtered_with_http_200_is_never_stored():
    with pytest.raises(JobError) as info:
        SDXLAdapter().parse_response({"result": "success", "artifacts": [
            {"seed": 1, "base64": png_b64(), "finishReason": "CONTENT_FILTERED"}]})
    assert (info.value.code, info.value.retryable) == ("content_filtered", False)
    assert "CONTENT_FILTERED" in info.value.message


@pytest.mark.parametrize("payload", [
    {"result": "success", "artifacts": [{"seed": 1, "base64": png_b64(), "finishReason": "ERROR"}]},
    {"result": "success", "artifacts": []},
    {"result": "error"},
    {"result": "success", "artifacts": [{"seed": 1, "base64": "not base64!", "finishReason": "SUCCESS"}]},
])
def test_sdxl_error_answers_are_model_errors(payload):
    with pytest.raises(JobError) as info:
        SDXLAdapter().parse_response(payload)
    assert info.value.code == "model_error"


def test_sd35_success_response_sniffs_the_format():
    jpeg = base64.b64encode(g.encode(g.solid((64, 64), g.RED), "JPEG")).decode()
    result = SD35Adapter().parse_response({"seeds": [5], "finish_reasons": [None], "images": [jpeg]})
    assert result.image_format == "jpeg" and result.seeds == [5]


@pytest.mark.parametrize("reason", ["Filter reason: output image", "Filter reason: prompt",
                                    "Filter reason: input image"])
def test_sd35_filtered_answers_without_images(reason):
    with pytest.raises(JobError) as info:
        SD35Adapter().parse_response({"seeds": [5], "finish_reasons": [reason]})
    assert (info.value.code, info.value.retryable) == ("content_filtered", False)
    assert reason in info.value.message


def test_sd35_inference_error():
    with pytest.raises(JobError) as info:
        SD35Adapter().parse_response({"seeds": [5], "finish_reasons": ["Inference error"], "images": [png_b64()]})
    assert info.value.code == "model_error"
    assert "Inference error" in info.value.message


def test_sd35_success_without_images_is_a_model_error():
    with pytest.raises(JobError) as info:
        SD35Adapter().parse_response({"seeds": [5], "finish_reasons": [None]})
    assert info.value.code == "model_error"


# ---- model ids ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_id, family", [
    (SDXL, "sdxl"),
    ("stability.stable-diffusion-xl-v1:0", "sdxl"),
    ("arn:aws:bedrock:us-east-1::foundation-model/stability.stable-diffusion-xl-v1", "sdxl"),
    (SD35, "sd3.5"),
    ("us.stability.sd3-5-large-v1:0", "sd3.5"),
    ("eu.stability.sd3-5-large-v1:0", "sd3.5"),
    ("apac.stability.sd3-5-large-v1:0", "sd3.5"),
    ("global.stability.sd3-5-large-v1:0", "sd3.5"),
    ("arn:aws:bedrock:us-west-2::foundation-model/stability.sd3-5-large-v1:0", "sd3.5"),
    ("arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.stability.sd3-5-large-v1:0", "sd3.5"),
    ("arn:aws:bedrock:eu-central-1:123456789012:inference-profile/eu.stability.sd3-5-large-v1:0", "sd3.5"),
])
def test_model_ids_pick_the_right_adapter(model_id, family):
    assert adapter_for(model_id).family == family


@pytest.mark.parametrize("model_id, base", [
    ("us.stability.sd3-5-large-v1:0", SD35),
    ("global.stability.sd3-5-large-v1:0", SD35),
    ("arn:aws:bedrock:us-west-2:123456789012:inference-profile/apac.stability.sd3-5-large-v1:0", SD35),
    ("arn:aws:bedrock:us-west-2::foundation-model/stability.stable-diffusion-xl-v1", SDXL),
    (SDXL, SDXL),
])
def test_base_model_id(model_id, base):
    assert base_model_id(model_id) == base


@pytest.mark.parametrize("model_id", [
    "amazon.titan-image-generator-v2:0", "us.amazon.nova-canvas-v1:0", "stability.stable-image-core-v1:1",
    "us.stability.stable-image-ultra-v1:1", "arn:aws:bedrock:us-west-2:123456789012:provisioned-model/abc123",
    "arn:aws:bedrock:us-west-2", "sd35", "",
])
def test_unknown_model_ids_fail_clearly(model_id):
    with pytest.raises(JobError) as info:
        adapter_for(model_id)
    assert repr(model_id) in info.value.message
    assert "supported" in info.value.message
    assert info.value.details["errors"][0]["value"] == model_id and info.value.details["errors"][0]["field"] == "model_id"  # noqa: E501


# ---- target sizes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size, expected", [
    ((512, 512), (1024, 1024)),
    ((4000, 3000), (1152, 896)),     # 4:3
    ((3000, 4000), (896, 1152)),     # 3:4
    ((600, 400), (1216, 832)),       # 3:2
    ((400, 600), (832, 1216)),
    ((1920, 1080), (1344, 768)),     # 16:9
    ((1080, 1920), (768, 1344)),
    ((2560, 1080), (1536, 640)),     # 21:9
    ((10000, 100), (1536, 640)),     # extreme panorama
    ((1, 5000), (640, 1536)),        # extreme tower
    ((1000, 1001), (1024, 1024)),
])
def test_sdxl_target_is_the_allowed_size_with_the_nearest_aspect(size, expected):
    assert SDXLAdapter().target_size(*size) == expected


@pytest.mark.parametrize("w, h", [(1, 1), (4, 3), (3, 2), (16, 9), (21, 9), (7, 3), (1, 7), (123, 457)])
def test_sdxl_target_is_one_of_the_nine_and_nearest(w, h):
    target = SDXLAdapter().target_size(w, h)
    assert target in SIZES
    distance = lambda s: abs(math.log((s[0] / s[1]) / (w / h)))  # noqa: E731
    assert distance(target) == min(distance(s) for s in SIZES)


@pytest.mark.parametrize("w, h", [(512, 512), (640, 427), (1920, 1080), (1080, 1920), (3000, 2000), (4, 3),
                                  (2500, 1000), (1000, 2500), (100, 10000), (10000, 100), (64, 64), (7000, 6999)])
def test_sd35_target_is_about_one_megapixel_in_64_steps_with_a_clamped_aspect(w, h):
    tw, th = SD35Adapter().target_size(w, h)
    assert tw % 64 == 0 and th % 64 == 0
    assert 0.85 * 1024 * 1024 <= tw * th <= 1.15 * 1024 * 1024
    expected_aspect = min(max(w / h, 1 / 2.5), 2.5)
    assert abs(math.log((tw / th) / expected_aspect)) < 0.06
    assert 1 / 2.5 <= tw / th <= 2.5


@pytest.mark.parametrize("size, expected", [((512, 512), (1024, 1024)), ((1920, 1080), (1344, 768)),
                                            ((10000, 100), (1600, 640)), ((100, 10000), (640, 1600))])
def test_sd35_target_examples(size, expected):
    assert SD35Adapter().target_size(*size) == expected
