"""The API and the per-model quota: its jobs are paced by the worker's limiter like every other job, and a
quota wait the API is told of is 429 with the limiter's own wait as Retry-After."""
from __future__ import annotations

import json

import pytest
from api_world import b64, get, post
from aws_world import SD35, png_bytes, sd35_ok
from aws_world import RefusingQuota as Quota

from img2img.core.errors import http_status, transient


@pytest.fixture
def deferred(api, monkeypatch):
    """(message, delay) of each job the worker sent back to wait for its model's quota."""
    sent = []
    monkeypatch.setattr(api.pipeline.scheduler, "defer", lambda message, delay: sent.append((message, delay)))
    return sent


def test_a_sync_job_over_its_models_quota_is_202_and_runs_once_when_its_turn_comes(api, deferred):
    api.pipeline.quota = quota = Quota(refusals=1, wait=8)

    answer = post("/v1/generations", {"image": b64(png_bytes((128, 128))), "params": {"prompt": "x"}})

    # The worker runs API jobs, so the limiter turned it away there: no model call, the job waits in the queue.
    assert answer.status == 202 and api.model_calls == [] and quota.asked == [SD35]
    [(message, delay)] = deferred
    assert delay == 8 and message["job_id"] == answer.json["job_id"]
    assert get(f"/v1/jobs/{message['job_id']}").json["status"] == "queued"
    api.stub.add_response("invoke_model", sd35_ok())
    api.run(json.dumps(message))  # its turn: the delayed copy comes back
    assert get(f"/v1/jobs/{message['job_id']}").json["status"] == "succeeded" and len(api.model_calls) == 1


def test_a_quota_wait_the_api_is_told_of_is_429_with_the_limiters_wait(api, monkeypatch):
    resolve, refusals = api.pipeline.resolve, [1]

    def refused_once(job):
        if refusals and refusals.pop():
            raise transient("quota_wait", f"{SD35} has no request left for now; the job comes back in 37 s",
                            retry_after=37)
        return resolve(job)

    monkeypatch.setattr(api.pipeline, "resolve", refused_once)
    request = {"image": b64(png_bytes((64, 64))), "params": {"prompt": "x"}}

    answer = post("/v1/jobs", request, headers={"Idempotency-Key": "q-1"})

    assert answer.status == http_status("quota_wait") == 429
    assert answer.headers["retry-after"] == "37"  # the limiter's wait, not the fixed guess
    assert answer.json["error"]["code"] == "quota_wait" and answer.json["error"]["retry_after"] == 37
    assert api.deferred() == []  # nothing queued
    again = post("/v1/jobs", request, headers={"Idempotency-Key": "q-1"})
    assert again.status == 202 and "idempotent-replayed" not in again.headers  # a refusal is not remembered


def test_a_transient_fault_with_no_known_wait_keeps_the_fixed_retry_after(api, monkeypatch):
    from img2img.handlers.api.service import RETRY_AFTER_SECONDS

    def unavailable(job):
        raise transient("storage_error", "S3 SlowDown")

    monkeypatch.setattr(api.pipeline, "resolve", unavailable)
    answer = post("/v1/jobs", {"image": b64(png_bytes((64, 64))), "params": {"prompt": "x"}})
    assert answer.status == 503 and answer.json["error"]["code"] == "service_unavailable"
    assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)


def test_the_openapi_document_says_where_retry_after_comes_from():
    from img2img_local import openapi

    responses = json.loads(openapi.render())["paths"]["/v1/jobs"]["post"]["responses"]
    assert "quota_wait" in responses["429"]["description"]
    assert "limiter" in responses["429"]["headers"]["Retry-After"]["description"]
    assert "guess" in responses["503"]["headers"]["Retry-After"]["description"]
