"""docs/openapi.json and the local API agree: schemathesis generates requests from the spec (valid and
invalid ones) and checks each answer: no 5xx, a documented status and content type, a body that fits
the documented schema. The real API handler runs in the emulated Lambda sandbox (img2img_local)."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from img2img_local import openapi
from img2img_local.project import load_pipeline_config
from img2img_local.stack import LocalStack

pytestmark = pytest.mark.e2e

SCHEMA = schemathesis.openapi.from_path(str(openapi.DOCUMENT))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 50  # per operation: the four operations in ~20 s on 2 cores


@pytest.fixture(scope="module")
def stack():
    config = load_pipeline_config(["sidecarGraceSeconds=0", "batchWindowSeconds=0", "apiSyncBudgetSeconds=2"])
    with LocalStack(config, visibility_timeout_seconds=10) as running:
        yield running


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_local_api_answers_as_its_spec_says(case, stack):
    case.call_and_validate(base_url=stack.api.url, checks=CHECKS, timeout=30)
