"""POST /v1/generations: sync image-to-image through the same pipeline as uploads."""
from __future__ import annotations

import json

import pytest
from api_world import ShortContext, b64, get, post
from aws_world import INPUT, OUTPUT, bedrock_body, png_bytes, sd35_ok


def queued(world) -> list[dict]:
    return world.deferred()


def test_json_request_returns_base64_image_and_the_record(api):
    api.stub.add_response("invoke_model", sd35_ok(seed=5, image=png_bytes((1024, 1024))))
    answer = post("/v1/generations", {"image": b64(png_bytes((256, 256))), "params": {"prompt": "a cat", "seed": 5}})
    assert answer.status == 200, answer.raw
    body = answer.json
    assert body["status"] == "succeeded" and body["job_id"].startswith("api-")
    assert body["image"]["content_type"] == "image/png"
    record = body["record"]
    assert record["trigger"] == "api" and record["seeds"] == [5] and record["job_id"] == body["job_id"]
    assert record["source"]["bucket"] == INPUT and record["source"]["key"] == f"api/{body['job_id']}/input.png"
    assert record["record"] == {"bucket": OUTPUT, "key": f"api/{body['job_id']}/input.png.json"}
    assert record["param_sources"]["prompt"] == "api request"
    assert body["url"].startswith("https://") and answer.headers["x-img2img-job-id"] == body["job_id"]
    api.stub.assert_no_pending_responses()
    # The same job is visible through GET /v1/jobs/{id}.
    status = get(f"/v1/jobs/{body['job_id']}")
    assert status.status == 200 and status.json["status"] == "succeeded"


def test_accept_image_returns_the_bytes(api):
    out = png_bytes((1024, 1024), color=(1, 2, 3))
    api.stub.add_response("invoke_model", sd35_ok(image=out))
    answer = post("/v1/generations", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}},
                  headers={"Accept": "image/png"})
    assert answer.status == 200 and answer.headers["content-type"] == "image/png"
    assert answer.is_base64 and answer.raw.startswith(b"\x89PNG")


def test_raw_image_body_with_parameters_in_the_query_string(api):
    api.stub.add_response("invoke_model", sd35_ok(seed=9), expected_params=None)
    answer = post("/v1/generations", png_bytes((200, 100)), binary=True,
                  headers={"Content-Type": "image/png"}, query={"prompt": "a dog", "seed": "9", "strength": "0.5"})
    assert answer.status == 200, answer.raw
    record = answer.json["record"]
    assert record["params"]["seed"] == 9 and record["model_request"]["strength"] == 0.5
    assert record["param_sources"]["seed"] == "api request"


def test_source_reference_in_the_input_bucket(api):
    api.put("photos/cat.png", png_bytes((300, 300)))
    api.stub.add_response("invoke_model", sd35_ok())
    answer = post("/v1/generations", {"source": f"s3://{INPUT}/photos/cat.png", "params": {"prompt": "x"}})
    assert answer.status == 200, answer.raw
    job_id = answer.json["job_id"]
    # Outputs of API jobs live under api/<job_id>/: the upload path's own record is never overwritten.
    assert api.output_keys() == [f"api/{job_id}/photos/cat.png.json", f"api/{job_id}/photos/cat.png.png"]


def test_source_outside_the_input_bucket_is_forbidden(api):
    answer = post("/v1/generations", {"source": "s3://someone-elses-bucket/x.png", "params": {"prompt": "x"}})
    assert answer.status == 403 and answer.json["error"]["code"] == "access_denied"


def test_missing_source_object_is_404_with_a_record(api):
    answer = post("/v1/generations", {"source": f"s3://{INPUT}/nope.png", "params": {"prompt": "x"}})
    assert answer.status == 404 and answer.json["error"]["code"] == "source_not_found"


def test_invalid_parameters_are_422_with_field_details_and_nothing_is_stored(api):
    answer = post("/v1/generations", {"image": b64(png_bytes()), "params": {"prompt": "x", "strength": 3,
                                                                            "seed": -1}})
    assert answer.status == 422
    error = answer.json["error"]
    assert error["code"] == "invalid_parameters"
    fields = {e["field"]: e for e in error["errors"]}
    assert set(fields) == {"strength", "seed"}
    assert fields["strength"]["value"] == 3 and fields["strength"]["source"] == "request params"
    assert "allowed" in fields["strength"]
    assert api.s3.list_objects_v2(Bucket=INPUT).get("KeyCount", 0) == 0
    assert api.output_keys() == []


def test_unknown_parameter_and_model_not_enabled_are_422(api):
    answer = post("/v1/generations", {"image": b64(png_bytes()), "params": {"prompt": "x", "cfg_scal": 7}})
    assert answer.status == 422 and "did you mean 'cfg_scale'" in answer.json["error"]["message"]
    answer = post("/v1/generations", {"image": b64(png_bytes()),
                                      "params": {"prompt": "x", "model_id": "stability.sd3-large-v1:0"}})
    assert answer.status == 422 and answer.json["error"]["errors"][0]["field"] == "model_id"


def test_malformed_bodies_are_422_with_field_details(api):
    answer = post("/v1/generations", {"image": b64(png_bytes()), "params": {"prompt": "x"}, "extra": 1})
    assert answer.status == 422 and answer.json["error"]["code"] == "invalid_parameters"
    assert answer.json["error"]["errors"][0]["field"] == "extra"
    answer = post("/v1/generations", {"params": {"prompt": "x"}})
    assert answer.status == 422 and "exactly one of image" in answer.json["error"]["message"]
    answer = post("/v1/generations", {"image": "not base64!", "params": {"prompt": "x"}})
    assert answer.status == 422 and answer.json["error"]["code"] == "invalid_image"


def test_not_an_image_is_422_invalid_image(api):
    answer = post("/v1/generations", {"image": b64(b"hello, not an image"), "params": {"prompt": "x"}})
    assert answer.status == 422 and answer.json["error"]["code"] == "invalid_image"
    assert answer.json["record"]["status"] == "failed"


def test_oversize_is_413(api, monkeypatch):
    from img2img import settings

    monkeypatch.setenv("IMG2IMG_MAX_INPUT_BYTES", "2000")
    settings.get_settings.cache_clear()
    big = png_bytes((400, 400), color=(9, 9, 9)) + b"\0" * 3000
    answer = post("/v1/generations", {"image": b64(big), "params": {"prompt": "x"}})
    assert answer.status == 413 and answer.json["error"]["code"] == "image_too_large"
    answer = post("/v1/generations", big, binary=True, headers={"Content-Type": "image/png"}, query={"prompt": "x"})
    assert answer.status == 413 and answer.json["error"]["code"] == "image_too_large"
    assert "POST /v1/uploads" in answer.json["error"]["message"]


def test_content_filtered_is_422_content_filtered(api):
    api.stub.add_response("invoke_model", bedrock_body({"seeds": [1], "finish_reasons": ["Filter reason: prompt"]}))
    answer = post("/v1/generations", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}})
    assert answer.status == 422 and answer.json["error"]["code"] == "content_filtered"
    assert answer.json["record"]["status"] == "failed"


def test_throttling_is_retried_by_the_worker_and_the_sync_route_answers_202_for_that_job(api):
    """A throttled job is the worker's to retry (no record yet): the client gets the job, not a 429."""
    api.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    answer = post("/v1/generations", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}})
    assert answer.status == 202 and api.output_keys() == []
    [message] = queued(api)
    assert message["job_id"] == answer.json["job_id"]
    api.stub.add_response("invoke_model", sd35_ok())
    api.run(json.dumps(message))
    assert get(f"/v1/jobs/{answer.json['job_id']}").json["status"] == "succeeded"
    assert len(api.model_calls) == 2  # the throttled call (refused, not billed) and the one generation


def test_idempotency_key_returns_the_first_answer_without_a_second_bedrock_call(api):
    api.stub.add_response("invoke_model", sd35_ok(seed=3))
    request = {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x", "seed": 3}}
    first = post("/v1/generations", request, headers={"Idempotency-Key": "k-1"})
    second = post("/v1/generations", request, headers={"Idempotency-Key": "k-1"})
    assert first.status == second.status == 200
    fresh_url = lambda body: {k: v for k, v in body.items() if k != "url"}  # noqa: E731 - presigned anew
    assert fresh_url(first.json) == fresh_url(second.json)
    api.stub.assert_no_pending_responses()  # one Bedrock call for both
    # A different key is a different request.
    api.stub.add_response("invoke_model", sd35_ok(seed=3))
    third = post("/v1/generations", request, headers={"Idempotency-Key": "k-2"})
    assert third.json["job_id"] != first.json["job_id"]


def test_large_result_is_303_to_a_presigned_url(api, monkeypatch):
    from img2img import settings

    monkeypatch.setenv("IMG2IMG_API_MAX_INLINE_BYTES", "1024")
    settings.get_settings.cache_clear()
    api.stub.add_response("invoke_model", sd35_ok(image=png_bytes((1024, 1024), color=(5, 6, 7))))
    answer = post("/v1/generations", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}},
                  headers={"Accept": "image/png"})
    assert answer.status == 303
    body = answer.json
    output = body["record"]["outputs"][0]
    assert answer.headers["location"] == body["url"] and output["key"] in body["url"]
    assert "X-Amz-Signature=" in body["url"] or "Signature=" in body["url"]
    assert "image" not in body


def test_fast_success_is_one_model_call_made_by_the_worker(api):
    api.stub.add_response("invoke_model", sd35_ok(seed=2))
    answer = post("/v1/generations", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x", "seed": 2}})
    assert answer.status == 200 and answer.json["record"]["seeds"] == [2]
    assert len(api.model_calls) == 1 and queued(api) == []
    api.stub.assert_no_pending_responses()


@pytest.mark.parametrize("context", [ShortContext(1000), None], ids=["no-time-left", "worker-slower-than-budget"])
def test_past_the_deadline_answers_202_and_the_worker_generates_once(api, context):
    api.worker_keeps_up = False
    answer = post("/v1/generations", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}},
                  context=context)
    assert answer.status == 202, answer.raw
    body = answer.json
    assert body["status"] == "queued" and answer.headers["location"] == f"/prod/v1/jobs/{body['job_id']}"
    assert body["status_url"] == f"/prod/v1/jobs/{body['job_id']}"
    [message] = queued(api)
    assert message["type"] == "img2img.job" and message["job_id"] == body["job_id"] and message["origin"] == "api"
    assert api.output_keys() == [] and api.model_calls == []  # the API itself never calls the model
    assert get(f"/v1/jobs/{body['job_id']}").json["status"] == "queued"
    # The worker completes it: one Bedrock call, the record at the key the job item names, once.
    api.stub.add_response("invoke_model", sd35_ok(seed=11))
    api.run(json.dumps(message))
    status = get(f"/v1/jobs/{body['job_id']}").json
    assert status["status"] == "succeeded" and status["record"]["job_id"] == body["job_id"]
    assert status["outputs"][0]["url"].startswith("https://")
    api.run(json.dumps(message))  # a duplicate delivery finds the result
    assert len(api.model_calls) == 1
    assert [k for k in api.output_keys() if k.endswith(".json")] == [f"api/{body['job_id']}/input.png.json"]


def test_failure_record_answers_with_the_error_tables_status_after_one_model_call(api):
    from img2img.core.errors import http_status

    api.stub.add_response("invoke_model", bedrock_body({"seeds": [1], "finish_reasons": ["Filter reason: output"]}))
    answer = post("/v1/generations", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}})
    assert answer.status == http_status("content_filtered") and answer.json["error"]["code"] == "content_filtered"
    assert answer.json["record"]["job_id"] == answer.json["job_id"] and len(api.model_calls) == 1


def test_the_wait_backs_off_from_a_quarter_second_to_one_second_and_stops_at_the_deadline():
    from img2img.handlers.api.service import wait_for_record

    now, sleeps, reads = [0.0], [], []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    assert wait_for_record(lambda: reads.append(now[0]), deadline=4.0, clock=lambda: now[0], sleep=sleep) is None
    assert sleeps == [0.25, 0.5, 1.0, 1.0, 1.0, 0.25] and reads[-1] == 4.0  # a last read at the deadline
    found = iter([None, None, {"status": "succeeded"}])
    assert wait_for_record(lambda: next(found), deadline=100.0, clock=lambda: 0.0, sleep=lambda s: None) == \
        {"status": "succeeded"}


def test_request_bodies_are_not_logged_above_debug(api, capsys):
    """The prompt and the image never reach INFO logs of the API, whatever the answer."""
    api.worker_keeps_up = False
    secret = "secret-prompt-6f1d"
    for request in ({"image": b64(png_bytes((64, 64))), "params": {"prompt": secret}},
                    {"image": b64(png_bytes((64, 64))), "params": {"prompt": secret, "strength": 9}},
                    {"image": "!!", "params": {"prompt": secret}}, {"bogus": secret}):
        post("/v1/generations", request, context=ShortContext(1000))
        post("/v1/jobs", request)
    post("/v1/uploads", {"filename": "a.png", "params": {"prompt": secret}})
    assert secret not in capsys.readouterr().out
