"""The HTTP API through the local stack with a real HTTP client: the real API handler in an emulated
Lambda sandbox, the real worker behind the job queue, the offline Bedrock engine."""
from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image

from img2img_local.project import load_pipeline_config
from img2img_local.stack import LocalStack

pytestmark = pytest.mark.e2e


def png(size=(96, 64), color=(30, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = load_pipeline_config(["sidecarGraceSeconds=0", "batchWindowSeconds=0"])
    with LocalStack(config, visibility_timeout_seconds=10) as running:
        env_file = tmp_path_factory.mktemp("env") / "local.env"
        running.write_env_file(env_file)
        running.env_file_text = env_file.read_text()
        yield running


def request(stack, method, path, body=None, headers=None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(stack.api.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def poll(stack, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = request(stack, "GET", f"/v1/jobs/{job_id}")
        assert status == 200
        job = json.loads(body)
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_env_file_names_the_api_url(stack):
    assert f"IMG2IMG_API_URL={stack.api.url}" in stack.env_file_text
    assert stack.api.url.startswith("http://127.0.0.1:")


def test_sync_generation_returns_the_image(stack):
    status, headers, body = request(stack, "POST", "/v1/generations?prompt=a%20watercolor&seed=5", png(),
                                    {"Content-Type": "image/png", "Accept": "image/png"})
    assert status == 200, body[:500]
    assert headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    job_id = headers["X-Img2img-Job-Id"]
    job = poll(stack, job_id, timeout=5)
    assert job["status"] == "succeeded" and job["record"]["trigger"] == "api"
    with urllib.request.urlopen(job["outputs"][0]["url"], timeout=10) as presigned:  # the presigned GET works
        assert presigned.read() == body


def test_json_generation_and_validation_errors(stack):
    status, _, body = request(stack, "POST", "/v1/generations",
                              {"image": base64.b64encode(png()).decode(), "params": {"prompt": "x", "strength": 4}})
    assert status == 422
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_parameters" and error["errors"][0]["field"] == "strength"
    status, _, body = request(stack, "POST", "/v1/generations",
                              {"image": base64.b64encode(png()).decode(), "params": {"prompt": "a fox"}})
    assert status == 200 and json.loads(body)["image"]["content_type"] == "image/png"


def test_async_job_through_the_queue_and_the_worker(stack):
    status, headers, body = request(stack, "POST", "/v1/jobs",
                                    {"image": base64.b64encode(png()).decode(), "params": {"prompt": "a cat"}},
                                    {"Idempotency-Key": "e2e-job-1"})
    assert status == 202 and headers["Location"].startswith("/v1/jobs/")
    accepted = json.loads(body)
    again = request(stack, "POST", "/v1/jobs", {"image": base64.b64encode(png()).decode(),
                                                "params": {"prompt": "a cat"}}, {"Idempotency-Key": "e2e-job-1"})
    assert json.loads(again[2]) == accepted and again[1]["Idempotent-Replayed"] == "true"
    assert request(stack, "GET", headers["Location"])[0] == 200  # the link leads to the job on this URL
    job = poll(stack, accepted["job_id"])
    assert job["status"] == "succeeded" and job["outputs"][0]["key"].startswith(f"api/{accepted['job_id']}/")


def test_presigned_upload_then_status(stack):
    status, _, body = request(stack, "POST", "/v1/uploads",
                              {"filename": "dog.png", "content_type": "image/png", "params": {"prompt": "a dog"}})
    assert status == 201
    ticket = json.loads(body)
    put = urllib.request.Request(ticket["url"], data=png(), method="PUT", headers=ticket["headers"])
    with urllib.request.urlopen(put, timeout=10) as response:
        assert response.status == 200
    job = poll(stack, ticket["job_id"])
    assert job["status"] == "succeeded" and job["record"]["param_sources"]["prompt"] == "metadata x-amz-meta-params"


def test_image_generation_requested_on_the_bus_becomes_a_job(stack):
    s3, events, r = stack.client("s3"), stack.client("events"), stack.resources
    s3.put_object(Bucket=r.input_bucket, Key="api-less/owl.png", Body=png(), Metadata={"note": "no prompt here"})
    # (sidecarGraceSeconds=0: the upload itself fails with missing_parameters; the request then succeeds)
    events.put_events(Entries=[{"EventBusName": r.event_bus_name, "Source": "e2e.test",
                                "DetailType": "ImageGenerationRequested", "Detail": json.dumps({
                                    "source": f"s3://{r.input_bucket}/api-less/owl.png",
                                    "params": {"prompt": "an owl"}, "output": {"prefix": "requested/"}})}])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            record = json.loads(s3.get_object(Bucket=r.output_bucket, Key="events/requested/api-less/owl.png.json")["Body"].read())  # noqa: E501
            break
        except s3.exceptions.NoSuchKey:
            time.sleep(0.5)
    else:
        raise AssertionError("no record for the requested job")
    assert record["status"] == "succeeded" and record["trigger"] == "eventbridge"


def test_unknown_route_and_unknown_job(stack):
    assert request(stack, "GET", "/v1/nothing")[0] == 404
    status, _, body = request(stack, "GET", "/v1/jobs/api-unknown")
    assert status == 404 and json.loads(body)["error"]["code"] == "job_not_found"
