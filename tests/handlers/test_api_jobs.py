"""POST /v1/jobs, GET /v1/jobs/{id} and POST /v1/uploads: async jobs through the job queue."""
from __future__ import annotations

import json

from api_world import b64, get, post
from aws_world import INPUT, OUTPUT, png_bytes, s3_body, sd35_ok

JOB = {"image": b64(png_bytes((64, 64))), "params": {"prompt": "x"}}


def test_job_is_queued_as_a_job_message_then_succeeds(api):
    answer = post("/v1/jobs", {"image": b64(png_bytes((256, 256))), "params": {"prompt": "a fox", "seed": 4}})
    assert answer.status == 202, answer.raw
    job_id = answer.json["job_id"]
    assert answer.json == {"job_id": job_id, "status": "queued", "status_url": f"/prod/v1/jobs/{job_id}"}
    assert answer.headers["location"] == f"/prod/v1/jobs/{job_id}"
    [message] = api.deferred()
    assert message == {"type": "img2img.job", "job_id": job_id, "origin": "api", "params": {"prompt": "a fox", "seed": 4},  # noqa: E501
                       "source": {"bucket": INPUT, "key": f"api/{job_id}/input.png",
                                  "version_id": message["source"]["version_id"]},
                       "output": {"prefix": ""}}
    assert message["source"]["version_id"]
    status = get(f"/v1/jobs/{job_id}")
    assert status.status == 200 and status.json["status"] == "queued" and status.json["record"] is None

    api.stub.add_response("invoke_model", sd35_ok(seed=4))
    api.run(json.dumps(message))
    status = get(f"/v1/jobs/{job_id}").json
    assert status["status"] == "succeeded" and status["error"] is None
    assert status["record"]["trigger"] == "api" and status["record"]["job_id"] == job_id
    [output] = status["outputs"]
    assert output["key"] == f"api/{job_id}/input.png.png" and "X-Amz-Signature=" in output["url"]


def test_failed_job_reports_the_failure_record(api):
    answer = post("/v1/jobs", {"image": b64(b"GIF89a truncated"), "params": {"prompt": "x"}})
    [message] = api.deferred()
    api.run(json.dumps(message))
    status = get(f"/v1/jobs/{answer.json['job_id']}").json
    assert status["status"] == "failed" and status["error"]["code"] == "invalid_image" and status["outputs"] == []


def test_running_while_the_workers_idempotency_item_is_in_progress(api):
    job_id = post("/v1/jobs", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}}).json["job_id"]
    [message] = api.deferred()
    seen = {}

    def slow_invoke(model_id, body):
        seen["status"] = get(f"/v1/jobs/{job_id}").json["status"]
        return json.loads(sd35_ok()["body"].read())

    api.pipeline.model.invoke = slow_invoke  # the status call happens while the job runs
    api.run(json.dumps(message))
    assert seen["status"] == "running"
    assert get(f"/v1/jobs/{job_id}").json["status"] == "succeeded"


def test_invalid_job_is_422_before_anything_is_queued(api):
    answer = post("/v1/jobs", {"image": b64(png_bytes()), "params": {"prompt": "x", "steps": 30}})
    assert answer.status == 422
    assert answer.json["error"]["errors"][0]["field"] == "steps"
    assert api.deferred() == []


def test_folder_defaults_are_applied_at_submission_too(api):
    api.put("_defaults.json", {"prompt": "from the bucket root", "seed": 99})
    answer = post("/v1/jobs", {"image": b64(png_bytes((128, 128))), "params": {}})
    assert answer.status == 202
    [message] = api.deferred()
    api.stub.add_response("invoke_model", sd35_ok(seed=99))
    api.run(json.dumps(message))
    record = get(f"/v1/jobs/{answer.json['job_id']}").json["record"]
    assert record["params"]["seed"] == 99 and record["param_sources"]["seed"].startswith("folder defaults")


def test_unknown_job_is_404_and_a_bad_id_is_422(api):
    answer = get("/v1/jobs/api-doesnotexist")
    assert answer.status == 404 and answer.json["error"]["code"] == "job_not_found"
    answer = get("/v1/jobs/NOT_AN_ID")
    assert answer.status == 422 and answer.json["error"]["code"] == "invalid_parameters"


def test_job_with_idempotency_key_is_queued_once(api):
    request = {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}}
    first = post("/v1/jobs", request, headers={"Idempotency-Key": "job-1"})
    second = post("/v1/jobs", request, headers={"Idempotency-Key": "job-1"})
    assert first.status == second.status == 202 and first.json == second.json
    assert len(api.deferred()) == 1


def test_api_inputs_never_run_as_uploads(api, monkeypatch):
    """The worker is deployed with the API prefix excluded (config.worker_excluded_prefixes)."""
    from img2img import assembly, settings

    monkeypatch.setenv("IMG2IMG_EXCLUDED_PREFIXES", "api/")
    settings.get_settings.cache_clear()
    assembly.get_pipeline.cache_clear()
    job_id = post("/v1/jobs", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}}).json["job_id"]
    api.deferred()
    result = api.run(s3_body(f"api/{job_id}/input.png"))
    assert result == {"batchItemFailures": []} and api.output_keys() == []


def test_upload_ticket_is_a_presigned_put_with_the_params_as_metadata(api):
    answer = post("/v1/uploads", {"filename": "cat.jpg", "content_type": "image/jpeg",
                                  "params": {"prompt": "a cat", "seed": 7}})
    assert answer.status == 201, answer.raw
    ticket = answer.json
    job_id = ticket["job_id"]
    assert ticket["method"] == "PUT" and ticket["bucket"] == INPUT and ticket["key"] == f"uploads/{job_id}/cat.jpg"
    assert ticket["headers"] == {"Content-Type": "image/jpeg", "x-amz-meta-params": '{"prompt":"a cat","seed":7}'}
    assert ticket["record"] == {"bucket": OUTPUT, "key": f"uploads/{job_id}/cat.jpg.json"}
    assert "X-Amz-Signature=" in ticket["url"] and ticket["expires_in"] == 900
    assert get(f"/v1/jobs/{job_id}").json["status"] == "queued"

    # What the browser then does, and what the worker makes of it (the S3 notification).
    api.s3.put_object(Bucket=INPUT, Key=ticket["key"], Body=png_bytes((128, 128)), ContentType="image/jpeg",
                      Metadata={"params": ticket["headers"]["x-amz-meta-params"]})
    api.stub.add_response("invoke_model", sd35_ok(seed=7))
    api.run(s3_body(ticket["key"]))
    status = get(f"/v1/jobs/{job_id}").json
    assert status["status"] == "succeeded" and status["record"]["params"]["seed"] == 7
    assert status["record"]["param_sources"]["seed"] == "metadata x-amz-meta-params"


def test_upload_with_bad_params_is_422_before_upload(api):
    answer = post("/v1/uploads", {"filename": "cat.jpg", "params": {"prompt": "x", "strength": 7}})
    assert answer.status == 422 and answer.json["error"]["errors"][0]["field"] == "strength"
    answer = post("/v1/uploads", {"filename": "notes.txt", "params": {}})
    assert answer.status == 422 and answer.json["error"]["errors"][0]["field"] == "filename"
    answer = post("/v1/uploads", {"filename": "cat.jpg", "params": {"prompt": "x" * 3000}})
    assert answer.status == 422 and "sidecar" in answer.json["error"]["message"]


def test_cors_headers_for_configured_origins_only(api, monkeypatch):
    from img2img import settings

    assert "access-control-allow-origin" not in get("/v1/jobs/api-nothing").headers  # none configured: no CORS
    monkeypatch.setenv("IMG2IMG_API_CORS_ORIGINS", "https://app.example.com,https://other.example.com")
    settings.get_settings.cache_clear()
    for origin in ("https://app.example.com", "https://other.example.com"):
        answer = get("/v1/jobs/api-nothing", headers={"Origin": origin})  # an error answer gets them too
        assert answer.status == 404 and answer.headers["access-control-allow-origin"] == origin
        exposed = set(answer.headers["access-control-expose-headers"].split(","))
        assert exposed == {"Location", "Retry-After", "Idempotent-Replayed"}
    answer = post("/v1/jobs", {"image": b64(png_bytes((64, 64))), "params": {"prompt": "x"}},
                  headers={"Origin": "https://evil.example.com"})
    assert answer.status == 202 and "access-control-allow-origin" not in answer.headers


def test_a_body_that_is_neither_json_nor_an_image_is_415_in_the_api_format(api):
    for content_type in ("multipart/form-data", "application/x-www-form-urlencoded", "text/plain"):
        answer = post("/v1/jobs", "image=x", headers={"Content-Type": content_type})
        assert answer.status == 415 and answer.json["error"]["code"] == "unsupported_media_type", answer.raw
    assert post("/v1/jobs", JOB, headers={"Content-Type": "application/json; charset=utf-8"}).status == 202
    assert api.deferred() and get("/v1/jobs/api-none", headers={"Content-Type": "text/plain"}).status == 404
