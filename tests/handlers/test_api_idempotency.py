"""Idempotency-Key: a reused key gets its first answer, whatever the retry's body, and says it is a replay."""
from __future__ import annotations

from api_world import b64, get, post
from aws_world import png_bytes

JOB = {"image": b64(png_bytes((128, 128))), "params": {"prompt": "a fox"}}
REPLAYED = "idempotent-replayed"


def test_a_retry_with_the_same_body_is_the_first_answer_marked_replayed(api):
    first = post("/v1/jobs", JOB, headers={"Idempotency-Key": "same"})
    again = post("/v1/jobs", JOB, headers={"Idempotency-Key": "same"})
    assert first.status == again.status == 202 and again.json == first.json
    assert REPLAYED not in first.headers and again.headers[REPLAYED] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert len(api.deferred()) == 1


def test_a_reused_key_with_another_valid_body_is_the_first_answer(api):
    first = post("/v1/jobs", JOB, headers={"Idempotency-Key": "k"})
    other = post("/v1/jobs", {"image": b64(png_bytes((64, 64))), "params": {"prompt": "a cat", "seed": 3}},
                 headers={"Idempotency-Key": "k"})
    assert other.status == 202 and other.json == first.json and other.headers[REPLAYED] == "true"
    assert len(api.deferred()) == 1


def test_a_reused_key_with_a_body_that_fails_validation_is_the_first_answer_not_422(api):
    first = post("/v1/jobs", JOB, headers={"Idempotency-Key": "k"})
    for body in ({"imagex": 1}, {"image": 7}, {"image": b64(png_bytes()), "params": "not an object"}):
        again = post("/v1/jobs", body, headers={"Idempotency-Key": "k"})
        assert again.status == 202 and again.json == first.json and again.headers[REPLAYED] == "true", again.raw
    # Without the key, or with a fresh one, the same body is the 422 it always was.
    for headers in ({}, {"Idempotency-Key": "fresh"}):
        answer = post("/v1/jobs", {"imagex": 1}, headers=headers)
        assert answer.status == 422 and answer.json["error"]["code"] == "invalid_parameters"
        assert REPLAYED not in answer.headers
    assert len(api.deferred()) == 1


def test_a_key_is_scoped_to_its_route(api):
    job = post("/v1/jobs", JOB, headers={"Idempotency-Key": "shared"})
    upload = post("/v1/uploads", {"filename": "cat.png"}, headers={"Idempotency-Key": "shared"})
    assert job.status == 202 and upload.status == 201 and upload.json["job_id"] != job.json["job_id"]
    assert REPLAYED not in upload.headers
    invalid = post("/v1/uploads", {"filename": "notes.txt"}, headers={"Idempotency-Key": "shared"})
    assert invalid.status == 201 and invalid.json == upload.json and invalid.headers[REPLAYED] == "true"


def test_a_refused_request_does_not_use_up_its_key(api):
    """A 4xx before the job exists (here the model's rules) is not kept: the corrected retry runs."""
    first = post("/v1/jobs", {"image": b64(png_bytes()), "params": {"prompt": "x", "steps": 30}},
                 headers={"Idempotency-Key": "fixed"})
    assert first.status == 422 and api.deferred() == []
    fixed = post("/v1/jobs", JOB, headers={"Idempotency-Key": "fixed"})
    assert fixed.status == 202 and REPLAYED not in fixed.headers and len(api.deferred()) == 1


def test_the_sync_routes_replay_is_the_same_image_in_the_representation_asked_for(api):
    from aws_world import sd35_ok

    api.stub.add_response("invoke_model", sd35_ok(seed=5))
    first = post("/v1/generations", {**JOB, "params": {"prompt": "a fox", "seed": 5}},
                 headers={"Idempotency-Key": "sync"})
    assert first.status == 200, first.raw
    again = post("/v1/generations", {"image": 1}, headers={"Idempotency-Key": "sync", "Accept": "image/png"})
    assert again.status == 200 and again.headers[REPLAYED] == "true"
    assert again.headers["x-img2img-job-id"] == first.json["job_id"] and again.raw.startswith(b"\x89PNG")
    assert len(api.model_calls) == 1
    assert get(f"/v1/jobs/{first.json['job_id']}").json["status"] == "succeeded"
