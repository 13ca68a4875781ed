"""The worker's Bedrock edge against the offline engine: every throttled attempt is counted, also those
botocore retries, and the last one ends as a transient error (the queue retries the job)."""
from __future__ import annotations

import pytest

from img2img.aws import clients
from img2img.aws.bedrock import BedrockInvoker
from img2img.core.errors import JobError
from img2img_local.engine import EngineConfig, EngineServer
from tests.e2e.engine_fixtures import b64, sample, sd35_body

pytestmark = pytest.mark.e2e


@pytest.fixture
def engine(monkeypatch):
    server = EngineServer(EngineConfig(error_rates={"ThrottlingException": 1.0}), port=0).start()
    for name, value in {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": server.url, "AWS_ACCESS_KEY_ID": "x",
                        "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    clients.client.cache_clear()
    clients._session.cache_clear()
    yield server
    server.stop()
    clients.client.cache_clear()
    clients._session.cache_clear()


def test_each_throttled_attempt_is_counted_and_the_last_is_transient(engine, monkeypatch):
    from img2img.aws import bedrock

    counted = []
    monkeypatch.setattr(bedrock.metrics, "add_metric", lambda name, unit, value: counted.append(name))
    invoker = BedrockInvoker(read_timeout=120, max_attempts=2)
    with pytest.raises(JobError) as info:
        invoker.invoke("stability.sd3-5-large-v1:0", sd35_body(b64(sample("coffee.png", (256, 256))), prompt="x"))
    assert info.value.retryable and info.value.code == "throttled"
    outcomes = engine.stats()["by_outcome"]
    assert outcomes.get("ThrottlingException", 0) + outcomes.get("throttled", 0) == 2  # both attempts
    assert counted.count("BedrockThrottles") == 2
