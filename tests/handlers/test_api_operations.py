"""The HTTP API takes operations and their companion images (base64 or input-bucket keys)."""
from __future__ import annotations

import base64
import io
import json
import os

import pytest
from api_world import b64, get, post
from aws_world import INPUT, png_bytes, sd35_ok
from PIL import Image

from img2img.operations import BY_NAME

ROOM = png_bytes((256, 256), color=(120, 90, 60))
MASK = png_bytes((256, 256), color=(255, 255, 255))


def sent(api) -> tuple[str, dict]:
    """(model id, request body) of the one Bedrock call."""
    [call] = api.model_calls
    return call["modelId"], json.loads(call["body"])


def input_keys(api) -> list[str]:
    return sorted(o["Key"] for o in api.s3.list_objects_v2(Bucket=INPUT).get("Contents", []))


def test_remove_background_without_a_prompt(api):
    api.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    answer = post("/v1/generations", {"image": b64(ROOM), "operation": "remove-background"})
    assert answer.status == 200, answer.raw
    model_id, body = sent(api)
    assert model_id == BY_NAME["remove-background"].default_model_id
    assert set(body) == {"image", "output_format"} and body["output_format"] == "png"
    assert answer.json["record"]["operation"] == "remove-background"


def test_operation_inside_params_works_as_well(api):
    api.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    answer = post("/v1/generations", {"image": b64(ROOM), "params": {"operation": "Remove_Background"}})
    assert answer.status == 200, answer.raw
    assert sent(api)[0] == BY_NAME["remove-background"].default_model_id


def test_base64_mask_is_stored_beside_the_input_before_it_and_reaches_the_model(api, monkeypatch):
    from img2img.handlers.api import service

    order = []
    put_input = service.edge().put_input
    monkeypatch.setattr(service.edge(), "put_input", lambda b, k, *a: order.append(k) or put_input(b, k, *a))
    api.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    answer = post("/v1/generations", {"image": b64(ROOM), "mask": b64(MASK), "operation": "inpaint",
                                      "params": {"prompt": "a green velvet sofa"}})
    assert answer.status == 200, answer.raw
    job_id = answer.json["job_id"]
    assert order == [f"api/{job_id}/input.png.mask.png", f"api/{job_id}/input.png"]
    model_id, body = sent(api)
    assert model_id == BY_NAME["inpaint"].default_model_id
    assert body["prompt"] == "a green velvet sofa" and body["mask"]
    mask = Image.open(io.BytesIO(base64.b64decode(body["mask"])))
    assert mask.mode == "L" and mask.getextrema() == (255, 255)  # all white: edit everything
    assert answer.json["record"]["companions"]["mask"]["key"] == f"api/{job_id}/input.png.mask.png"


@pytest.mark.parametrize("reference", ["masks/room.png", "/masks/room.png", f"s3://{INPUT}/masks/room.png"])
def test_mask_key_in_the_input_bucket_is_the_jobs_absolute_mask(api, reference):
    api.put("masks/room.png", MASK)
    answer = post("/v1/jobs", {"image": b64(ROOM), "mask": reference, "operation": "inpaint",
                               "params": {"prompt": "a sofa"}})
    assert answer.status == 202, answer.raw
    [message] = api.deferred()
    assert message["params"] == {"prompt": "a sofa", "operation": "inpaint", "mask": "/masks/room.png"}
    api.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    api.run(json.dumps(message))
    status = get(f"/v1/jobs/{answer.json['job_id']}").json
    assert status["status"] == "succeeded", status
    assert status["record"]["companions"]["mask"]["key"] == "masks/room.png"
    assert "mask" in sent(api)[1]


def test_style_image_base64_with_a_source_is_stored_under_the_jobs_folder(api):
    api.put("photos/cat.png", ROOM)
    api.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    answer = post("/v1/generations", {"source": f"s3://{INPUT}/photos/cat.png", "operation": "style-transfer",
                                      "style_image": b64(png_bytes((128, 128), color=(0, 0, 255)))})
    assert answer.status == 200, answer.raw
    job_id = answer.json["job_id"]
    assert answer.json["record"]["companions"]["style_image"]["key"] == f"api/{job_id}/style.png"
    model_id, body = sent(api)
    assert model_id == BY_NAME["style-transfer"].default_model_id
    assert set(body) >= {"init_image", "style_image"}


@pytest.mark.parametrize("field,params", [("mask", {"operation": "inpaint", "prompt": "x"}),
                                          ("style_image", {"operation": "style-transfer"})])
def test_a_companion_in_another_bucket_is_refused_naming_the_field(api, field, params):
    answer = post("/v1/generations", {"image": b64(ROOM), field: "s3://someone-elses-bucket/m.png",
                                      "params": params})
    assert answer.status == 403 and answer.json["error"]["code"] == "access_denied"
    assert field in answer.json["error"]["message"] and answer.json["error"]["errors"][0]["field"] == field
    answer = post("/v1/generations", {"image": b64(ROOM), "params": {**params, field: "s3://other-bkt/m.png"}})
    assert answer.status == 403 and answer.json["error"]["errors"][0]["field"] == f"params.{field}"
    assert input_keys(api) == [] and api.model_calls == []


@pytest.mark.parametrize("request_body,field", [
    ({"operation": "paint-it-blue"}, "operation"),
    ({"operation": "remove-background", "mask": b64(MASK)}, "mask"),
    ({"operation": "inpaint", "params": {"prompt": "x", "grow_mask": 99}}, "grow_mask"),
    ({"operation": "inpaint", "params": {"operation": "erase"}}, "operation"),
    ({"operation": "style-transfer", "style_image": b64(b"not an image")}, "style_image"),
    ({"operation": "style-transfer", "style_image": "!!"}, "style_image"),
])
def test_a_bad_operation_field_or_companion_is_422_with_details_and_nothing_is_stored(api, request_body, field):
    answer = post("/v1/jobs", {"image": b64(ROOM), **request_body})
    assert answer.status == 422, answer.raw
    assert field in [e["field"] for e in answer.json["error"]["errors"]]
    assert input_keys(api) == [] and api.deferred() == []


def test_a_named_mask_that_does_not_exist_is_422_and_the_stored_input_is_removed(api):
    answer = post("/v1/jobs", {"image": b64(ROOM), "mask": "masks/nope.png", "operation": "inpaint",
                               "params": {"prompt": "x"}})
    assert answer.status == 422 and answer.json["error"]["code"] == "missing_parameters"
    assert answer.json["error"]["errors"][0]["field"] == "mask"
    assert input_keys(api) == [] and api.deferred() == []


def test_an_upscale_of_tens_of_megabytes_answers_303_to_a_presigned_url(api):
    """The default inline limit (4 MB) holds for outputs far above it; the API never reads them."""
    from img2img.handlers.api import service

    big = Image.frombytes("RGB", (2048, 2048), os.urandom(2048 * 2048 * 3))
    buffer = io.BytesIO()
    big.save(buffer, "PNG", compress_level=1)
    assert buffer.tell() > 10_000_000
    api.stub.add_response("invoke_model", sd35_ok(image=buffer.getvalue()), expected_params=None)
    reads, get_object = [], service.edge().get_object
    service.edge().get_object = lambda bucket, key: reads.append(key) or get_object(bucket, key)
    answer = post("/v1/generations", {"image": b64(ROOM), "operation": "upscale-fast"},
                  headers={"Accept": "image/png"})
    assert answer.status == 303, answer.raw[:300]
    output = answer.json["record"]["outputs"][0]
    assert output["bytes"] > 10_000_000 and answer.headers["location"] == answer.json["url"]
    assert output["key"] in answer.json["url"] and "image" not in answer.json
    assert output["key"] not in reads
    got = api.s3.get_object(Bucket=output["bucket"], Key=output["key"])
    assert got["ContentLength"] == output["bytes"]


def test_raw_image_body_takes_the_operation_from_the_query_string(api):
    api.stub.add_response("invoke_model", sd35_ok(), expected_params=None)
    answer = post("/v1/generations", ROOM, binary=True, headers={"Content-Type": "image/png"},
                  query={"operation": "upscale-fast"})
    assert answer.status == 200, answer.raw
    assert sent(api)[0] == BY_NAME["upscale-fast"].default_model_id


def test_a_companion_that_is_neither_a_key_nor_base64_says_so(api):
    answer = post("/v1/jobs", {"image": b64(ROOM), "operation": "inpaint", "mask": "masks/room",
                               "params": {"prompt": "x"}})
    assert answer.status == 422 and "neither an image key" in answer.json["error"]["message"]


def test_an_upload_ticket_for_an_operation_without_a_prompt(api):
    answer = post("/v1/uploads", {"filename": "cat.png", "params": {"operation": "remove-background"}})
    assert answer.status == 201, answer.raw
    answer = post("/v1/uploads", {"filename": "cat.png", "params": {"operation": "remove-background", "seed": 1}})
    assert answer.status == 422 and answer.json["error"]["errors"][0]["field"] == "seed"
