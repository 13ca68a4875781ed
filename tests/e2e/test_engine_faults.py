"""Every fault knob does what a pipeline under test would notice: latency, quotas, errors, filters, EOL."""
import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import ImageFilter

from img2img_local.engine import ConfigError, EngineConfig, EngineServer, add_engine_arguments, config_from_args
from img2img_local.engine.faults import EOL_MESSAGE, FaultState
from tests.e2e.engine_fixtures import (  # noqa: F401 (fixtures)
    SD35,
    SDXL,
    b64,
    bedrock_client,
    client,
    decode,
    fresh,
    http,
    invoke,
    mean_difference,
    sample,
    sd35_body,
    sdxl_body,
    server,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SMALL_B64 = b64(sample("coffee.png", (96, 64)))
SQUARE_B64 = b64(sample("astronaut.png", (1024, 1024)))
INVALID = {"prompt": "x", "cfg_scale": 7}  # rejected after every fault check, without rendering




def outcome(client, model_id=SD35, body=None, headers=None) -> str:
    """'success' / 'filtered' / the error code of one call."""
    try:
        answer = invoke(client, model_id, body if body is not None else sd35_body(SMALL_B64), headers)
    except client.exceptions.ClientError as err:
        return err.response["Error"]["Code"]
    filtered = answer.get("finish_reasons", [None])[0] or answer.get("artifacts", [{}])[0].get("finishReason")
    return "filtered" if filtered not in (None, "SUCCESS") else "success"


def detail(image) -> float:
    """How much an image changes under a small blur: near zero once it is blurred beyond recognition."""
    return mean_difference(image, image.filter(ImageFilter.BoxBlur(8)))


def timed(function) -> float:
    started = time.monotonic()
    function()
    return time.monotonic() - started


# --- latency ---------------------------------------------------------------------------------------------
def test_fixed_latency_delays_every_answer(server, client):
    server.configure(latency_ms=300)
    assert timed(lambda: outcome(client)) >= 0.3
    assert timed(lambda: outcome(client, body=INVALID)) >= 0.3


def test_latency_header_overrides_the_configured_latency(server, client):
    server.configure(latency_ms=5000)
    assert timed(lambda: outcome(client, headers={"x-img2img-latency-ms": "0"})) < 4
    server.reset()
    assert timed(lambda: outcome(client, headers={"x-img2img-latency-ms": "250"})) >= 0.25


def test_jitter_is_uniform_above_the_fixed_latency():
    faults = FaultState(EngineConfig(latency_ms=100, jitter_ms=50, seed=7))
    draws = [faults.latency_seconds() for _ in range(2000)]
    assert min(draws) >= 0.1 and max(draws) <= 0.15
    assert max(draws) - min(draws) > 0.045


def test_lognormal_latency_matches_its_mean_and_p95():
    faults = FaultState(EngineConfig(lognormal_mean_ms=200, lognormal_p95_ms=450, seed=3))
    draws = sorted(faults.latency_seconds() * 1000 for _ in range(20000))
    assert sum(draws) / len(draws) == pytest.approx(200, rel=0.05)
    assert draws[int(0.95 * len(draws))] == pytest.approx(450, rel=0.05)


# --- quotas ----------------------------------------------------------------------------------------------
def test_requests_per_minute_quota_answers_429_throttling(server, client):
    server.configure(requests_per_minute=2)
    assert [outcome(client), outcome(client, body=INVALID)] == ["success", "ValidationException"]
    with pytest.raises(client.exceptions.ThrottlingException) as caught:
        invoke(client, SD35, sd35_body(SMALL_B64))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert caught.value.response["Error"]["Message"] == "Too many requests, please wait before trying again."
    assert server.stats()["by_model"][SD35] == {"success": 1, "ValidationException": 1, "throttled": 1}


def test_concurrency_quota_throttles_requests_beyond_it(server):
    server.configure(max_concurrent=1, latency_ms=800)
    clients = [bedrock_client(server.url) for _ in range(3)]
    start = threading.Barrier(3)
    results = []

    def call(each):
        start.wait()
        results.append(outcome(each, body=INVALID))

    threads = [threading.Thread(target=call, args=(each,)) for each in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ThrottlingException", "ThrottlingException", "ValidationException"]
    assert server.stats()["in_flight_peak"] >= 2
    assert server.stats()["by_outcome"]["throttled"] == 2


# --- injected errors -------------------------------------------------------------------------------------
def test_error_rate_one_fails_every_call(server, client):
    server.configure(error_rates={"ModelTimeoutException": 1.0})
    assert {outcome(client, body=INVALID) for _ in range(5)} == {"ModelTimeoutException"}


def test_error_rates_are_drawn_from_a_seedable_rng(server, client):
    server.configure(error_rates={"InternalServerException": 0.3, "ServiceUnavailableException": 0.2}, seed=11)
    first = [outcome(client, body=INVALID) for _ in range(60)]
    counts = {name: first.count(name) for name in set(first)}
    assert 8 <= counts["InternalServerException"] <= 30
    assert 4 <= counts["ServiceUnavailableException"] <= 22
    assert counts["ValidationException"] >= 15
    server.configure(seed=11)
    assert [outcome(client, body=INVALID) for _ in range(60)] == first


def test_unknown_fault_header_is_a_validation_error(client):
    with pytest.raises(client.exceptions.ValidationException) as caught:
        invoke(client, SD35, sd35_body(SMALL_B64), headers={"x-img2img-fault": "Gremlins"})
    assert "Gremlins" in caught.value.response["Error"]["Message"]


# --- content filtering -----------------------------------------------------------------------------------
def test_blocked_words_reject_the_prompt_with_invalid_prompts(server, client):
    server.configure(blocked_words=["Forbidden"])
    for model_id, body in ((SD35, sd35_body(SMALL_B64, prompt="a FORBIDDEN garden")),
                           (SDXL, sdxl_body(SQUARE_B64, text_prompts=[{"text": "a forbidden garden"}]))):
        with pytest.raises(client.exceptions.ValidationException) as caught:
            invoke(client, model_id, body)
        assert "invalid_prompts" in caught.value.response["Error"]["Message"]
    assert outcome(client, body=sd35_body(SMALL_B64, prompt="unforbiddenly fine")) == "success"
    negative = sdxl_body(SQUARE_B64, text_prompts=[{"text": "a garden"}, {"text": "forbidden", "weight": -1}])
    assert outcome(client, SDXL, negative) == "success", "negative prompts are not screened"


def test_filter_words_blur_the_sdxl_image_and_flag_it(server, client):
    clean = invoke(client, SDXL, sdxl_body(SQUARE_B64, text_prompts=[{"text": "a gory scene"}]))
    server.configure(filter_words=["gory"])
    answer = invoke(client, SDXL, sdxl_body(SQUARE_B64, text_prompts=[{"text": "a gory scene"}]))
    [artifact] = answer["artifacts"]
    assert answer["result"] == "success" and artifact["finishReason"] == "CONTENT_FILTERED"
    blurred, sharp = decode(artifact["base64"]), decode(clean["artifacts"][0]["base64"])
    assert blurred.size == sharp.size
    assert detail(blurred) < 0.3 * detail(sharp)


def test_filter_words_give_sd35_a_filter_reason_and_no_images(server, client):
    server.configure(filter_words=["gory"])
    answer = invoke(client, SD35, sd35_body(SMALL_B64, prompt="a gory scene", seed=5))
    assert answer == {"seeds": [5], "finish_reasons": ["Filter reason: output image"]}
    assert server.stats()["by_outcome"] == {"filtered": 1}


# --- end of life -----------------------------------------------------------------------------------------
def test_end_of_life_models_answer_404_like_bedrock(server, client):
    assert outcome(client, SDXL, sdxl_body(SQUARE_B64)) == "success", "SDXL works offline by default"
    server.configure(eol_models=[SDXL])
    for model_id in (SDXL, "us.stability.stable-diffusion-xl-v1"):
        with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
            invoke(client, model_id, sdxl_body(SQUARE_B64))
        assert caught.value.response["Error"]["Message"] == EOL_MESSAGE
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert outcome(client) == "success", "other models keep working"


# --- control endpoints and counters ----------------------------------------------------------------------
def test_control_endpoints_change_reset_and_report(server, client):
    status, _, body = http("POST", f"{server.url}/_engine/config", {"requests_per_minute": 1, "latency_ms": 5})
    assert status == 200 and body["config"]["requests_per_minute"] == 1 and body["config"]["latency_ms"] == 5
    assert http("GET", f"{server.url}/_engine/config")[2] == body
    assert [outcome(client), outcome(client)] == ["success", "ThrottlingException"]
    status, _, stats = http("GET", f"{server.url}/_engine/stats")
    assert status == 200 and stats == server.stats()
    assert stats["total"] == 2 and stats["by_model"] == {SD35: {"success": 1, "throttled": 1}}
    status, _, body = http("POST", f"{server.url}/_engine/reset")
    assert status == 200 and body["config"]["requests_per_minute"] is None
    assert server.stats()["total"] == 0 and outcome(client) == "success"


@pytest.mark.parametrize("payload, fragment", [({"rpm": 5}, "rpm"), ({"error_rates": {"Oops": 0.5}}, "Oops"),
                                               ({"latency_ms": -1}, "latency_ms"), ([1, 2], "object")])
def test_control_endpoint_rejects_bad_config(server, payload, fragment):
    status, _, body = http("POST", f"{server.url}/_engine/config", payload)
    assert status == 400 and fragment in body["message"]
    assert server.config == EngineConfig()


def test_counters_by_model_and_outcome(server, client):
    server.configure(filter_words=["gory"])
    outcome(client)
    outcome(client, body=sd35_body(SMALL_B64, prompt="gory"))
    outcome(client, body=INVALID)
    outcome(client, headers={"x-img2img-fault": "AccessDeniedException"})
    outcome(client, SDXL, sdxl_body(SMALL_B64))
    outcome(client, "nope.model-v1")
    stats = server.stats()
    assert stats["total"] == 6 and stats["in_flight"] == 0 and stats["in_flight_peak"] == 1
    assert stats["by_model"] == {
        SD35: {"success": 1, "filtered": 1, "ValidationException": 1, "AccessDeniedException": 1},
        SDXL: {"ValidationException": 1},
        "nope.model-v1": {"ResourceNotFoundException": 1},
    }
    assert stats["by_outcome"]["ValidationException"] == 2


# --- configuration surfaces ------------------------------------------------------------------------------
def test_cli_flags_build_the_config():
    parser = add_engine_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--latency-ms", "20", "--jitter-ms", "5", "--rpm", "30", "--max-concurrent", "4",
                              "--error-rate", "ThrottlingException=0.1", "--error-rate", "ModelErrorException=0.05",
                              "--block-word", "gore", "--filter-word", "nsfw", "--eol-model", SDXL, "--seed", "9",
                              "--latency-mean-ms", "100", "--latency-p95-ms", "300", "--port", "0"])
    assert config_from_args(args) == EngineConfig(
        latency_ms=20, jitter_ms=5, lognormal_mean_ms=100, lognormal_p95_ms=300, requests_per_minute=30,
        max_concurrent=4, error_rates={"ThrottlingException": 0.1, "ModelErrorException": 0.05},
        blocked_words=("gore",), filter_words=("nsfw",), eol_models=(SDXL,), seed=9)
    with pytest.raises(SystemExit):
        parser.parse_args(["--error-rate", "Gremlins=0.5"])


def test_inconsistent_config_is_refused():
    with pytest.raises(ConfigError, match="add up"):
        EngineConfig(error_rates={"ThrottlingException": 0.7, "ModelErrorException": 0.7})
    with pytest.raises(ConfigError, match="together"):
        EngineConfig(lognormal_mean_ms=100)


def test_engine_refuses_non_loopback_hosts():
    with pytest.raises(ValueError, match="loopback"):
        EngineServer(host="0.0.0.0")


def test_foreground_engine_serves_until_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "img2img_local.engine", "--port", "0", "--eol-model", SDXL],
                               stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        foreground = bedrock_client(url)
        assert outcome(foreground, SDXL, sdxl_body(SQUARE_B64)) == "ResourceNotFoundException"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
