"""Location and status_url lead back to the same API whichever URL the client called it on."""
from __future__ import annotations

import json
from urllib.parse import urljoin

import pytest
from api_world import CUSTOM_DOMAIN_BASE_PATH, CUSTOM_DOMAIN_ROOT, EXECUTE_API, Gateway, b64, call
from aws_world import png_bytes

from img2img_local import api_server

GATEWAYS = {"execute-api stage prod": (EXECUTE_API, "/prod"),
            "custom domain, base path img": (CUSTOM_DOMAIN_BASE_PATH, "/img"),
            "custom domain, no base path": (CUSTOM_DOMAIN_ROOT, "")}
JOB = {"image": b64(png_bytes((64, 64))), "params": {"prompt": "a fox"}}


def follow(gateway: Gateway, base_url: str, link: str) -> dict:
    """What a client following `link` from `base_url` sends, as API Gateway hands it to Lambda."""
    url = urljoin(base_url, link)
    assert url.startswith(f"https://{gateway.domain}{gateway.mount}/v1/"), url
    return gateway.event("GET", url[len(f"https://{gateway.domain}"):])


@pytest.mark.parametrize("name", GATEWAYS)
def test_job_links_keep_the_stage_or_base_path_and_lead_to_the_job(api, name):
    gateway, mount = GATEWAYS[name]
    url = f"https://{gateway.domain}{mount}/v1/jobs"
    answer = call(gateway.event("POST", f"{mount}/v1/jobs", JOB))
    assert answer.status == 202, answer.raw
    job_id = answer.json["job_id"]
    assert answer.headers["location"] == answer.json["status_url"] == f"{mount}/v1/jobs/{job_id}"
    status = call(follow(gateway, url, answer.headers["location"]))
    assert status.status == 200 and status.json["job_id"] == job_id and status.json["status"] == "queued"


@pytest.mark.parametrize("name", GATEWAYS)
def test_upload_ticket_links_keep_the_stage_or_base_path(api, name):
    gateway, mount = GATEWAYS[name]
    answer = call(gateway.event("POST", f"{mount}/v1/uploads", {"filename": "cat.png"}))
    assert answer.status == 201, answer.raw
    job_id = answer.json["job_id"]
    assert answer.headers["location"] == answer.json["status_url"] == f"{mount}/v1/jobs/{job_id}"
    status = call(follow(gateway, f"https://{gateway.domain}{mount}/v1/uploads", answer.json["status_url"]))
    assert status.status == 200 and status.json["job_id"] == job_id


def test_sync_route_202_links_keep_the_base_path(api):
    api.worker_keeps_up = False
    answer = call(CUSTOM_DOMAIN_BASE_PATH.event("POST", "/img/v1/generations", JOB))
    assert answer.status == 202, answer.raw
    assert answer.headers["location"] == answer.json["status_url"] == f"/img/v1/jobs/{answer.json['job_id']}"


def test_a_replayed_answer_links_to_the_url_the_retry_called(api):
    """The same Idempotency-Key retried through another URL of the API gets links on that URL."""
    key = {"Idempotency-Key": "links-1"}
    first = call(EXECUTE_API.event("POST", "/prod/v1/jobs", JOB, headers=key))
    again = call(CUSTOM_DOMAIN_BASE_PATH.event("POST", "/img/v1/jobs", JOB, headers=key))
    job_id = first.json["job_id"]
    assert again.json["job_id"] == job_id and len(api.deferred()) == 1
    assert first.headers["location"] == f"/prod/v1/jobs/{job_id}"
    assert again.headers["location"] == again.json["status_url"] == f"/img/v1/jobs/{job_id}"


def test_local_api_links_have_no_stage(api):
    """img2img_local/api_server.py serves the routes at the root of http://127.0.0.1:<port>."""
    event = api_server.proxy_event("POST", "/v1/jobs", {"Content-Type": ["application/json"]},
                                   json.dumps(JOB).encode())
    answer = call(event)
    job_id = answer.json["job_id"]
    assert answer.headers["location"] == answer.json["status_url"] == f"/v1/jobs/{job_id}"
    status = call(api_server.proxy_event("GET", answer.headers["location"], {}, b""))
    assert status.status == 200 and status.json["job_id"] == job_id
