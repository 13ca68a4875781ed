"""The offline engine's per-model quotas and latencies: each model throttled by its own budget."""
from __future__ import annotations

import pytest

from img2img_local.engine import ConfigError, EngineConfig
from img2img_local.engine.faults import FaultState
from tests.e2e.engine_fixtures import (  # noqa: F401 (fixtures)
    SD35,
    SDXL,
    b64,
    client,
    fresh,
    invoke,
    sample,
    sd35_body,
    sdxl_body,
    server,
)

pytestmark = pytest.mark.e2e
SMALL_B64 = b64(sample("coffee.png", (96, 64)))
SQUARE_B64 = b64(sample("astronaut.png", (1024, 1024)))  # SDXL accepts only its listed sizes


def test_each_model_has_its_own_budget_besides_the_engine_wide_one():
    faults = FaultState(EngineConfig(requests_per_minute=5, model_requests_per_minute={SD35: 2}))
    assert [faults.admit(SD35) for _ in range(3)] == [True, True, False]
    assert [faults.admit(SDXL) for _ in range(4)] == [True, True, True, False]  # the engine-wide 5 is spent


def test_a_refusal_by_the_model_quota_spends_no_engine_wide_slot():
    faults = FaultState(EngineConfig(requests_per_minute=3, model_requests_per_minute={SD35: 1}))
    assert [faults.admit(SD35) for _ in range(4)] == [True, False, False, False]
    assert [faults.admit(SDXL) for _ in range(3)] == [True, True, False]


def test_per_model_latency_adds_to_the_base_latency():
    faults = FaultState(EngineConfig(latency_ms=100, model_latency_ms={SD35: 900}))
    assert faults.latency_seconds(SD35) == pytest.approx(1.0)
    assert faults.latency_seconds(SDXL) == pytest.approx(0.1)


@pytest.mark.parametrize("changes", [{"model_requests_per_minute": {SD35: 0}},
                                     {"model_latency_ms": {SD35: -1}}])
def test_bad_per_model_values_are_refused(changes):
    with pytest.raises(ConfigError):
        EngineConfig().merged(changes)


def test_the_server_throttles_one_model_and_serves_another(server, client):
    server.configure(model_requests_per_minute={SD35: 1})
    invoke(client, SD35, sd35_body(SMALL_B64))
    with pytest.raises(client.exceptions.ThrottlingException):
        invoke(client, SD35, sd35_body(SMALL_B64))
    invoke(client, SDXL, sdxl_body(SQUARE_B64))
    assert server.stats()["by_model"][SD35] == {"success": 1, "throttled": 1}
