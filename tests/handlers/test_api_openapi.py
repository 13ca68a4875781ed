"""docs/openapi.json is generated from the handler's code and must not go stale."""
from __future__ import annotations

import json

from openapi_spec_validator import OpenAPIV31SpecValidator

from img2img_local import openapi


def test_committed_openapi_document_is_current():
    assert openapi.DOCUMENT.read_text() == openapi.render(), \
        "docs/openapi.json is stale: run `.venv/bin/python -m img2img_local.openapi`"


def test_committed_document_is_valid_openapi_3_1():
    doc = json.loads(openapi.DOCUMENT.read_text())
    assert doc["openapi"].startswith("3.1.")
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert problems == []


def test_document_describes_every_route_status_and_the_error_format():
    doc = json.loads(openapi.render())
    paths = doc["paths"]
    assert set(paths) == {"/v1/generations", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/uploads", "/v1/bulk-jobs",
                          "/v1/bulk-jobs/{bulk_id}"}
    generations = paths["/v1/generations"]["post"]
    assert {"200", "202", "303", "413", "422", "429", "503"} <= set(generations["responses"])
    assert set(generations["requestBody"]["content"]) == {"application/json", "image/*"}
    assert any(p["name"] == "idempotency-key" and p["in"] == "header" for p in generations["parameters"])
    assert "code" in doc["components"]["schemas"]["ErrorDetail"]["properties"]
    request = doc["components"]["schemas"]["GenerationRequest"]["properties"]
    assert {"operation", "mask", "style_image"} <= set(request)
    assert "remove-background" in request["operation"]["description"]
    assert doc["security"] == [{"sigv4": []}]
    assert "Idempotent-Replayed" in paths["/v1/jobs"]["post"]["responses"]["202"]["headers"]
    assert {"403", "409", "415"} <= set(paths["/v1/uploads"]["post"]["responses"])
