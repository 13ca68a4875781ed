"""`img2img doctor` against the local stack: the engine's lifecycle table is what Bedrock would say."""
from __future__ import annotations

import logging

import pytest

from img2img_local.cli import main
from img2img_local.project import load_pipeline_config
from img2img_local.stack import LocalStack

INPAINT = "stability.stable-image-inpaint-v1:0"
SD35 = "stability.sd3-5-large-v1:0"


@pytest.fixture(scope="module")
def stack():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with LocalStack(load_pipeline_config(["logLevel=WARNING"]), attach_worker=False, serve_api=False) as running:
        yield running


@pytest.fixture
def doctor(stack, monkeypatch, capsys):
    from img2img.aws import clients

    for name, value in stack.client_environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    stack.engine.reset()

    def run(*args: str) -> tuple[int, str]:
        clients.client.cache_clear()
        clients._session.cache_clear()
        status = main(["doctor", *args])
        return status, capsys.readouterr().out

    yield run
    stack.engine.reset()
    clients.client.cache_clear()
    clients._session.cache_clear()


def test_every_configured_model_is_listed_and_a_healthy_deployment_passes(doctor):
    status, out = doctor()
    assert status == 0, out
    assert "model" in out.splitlines()[1] and "lifecycle" in out.splitlines()[1]
    for model in (SD35, f"us.{INPAINT}", "stability.stable-diffusion-xl-v1"):
        assert model in out
    assert out.rstrip().endswith("OK")


def test_a_retired_model_fails_the_doctor_with_advice(doctor, stack):
    stack.engine.configure(lifecycle={INPAINT: {"status": "END_OF_LIFE"}})
    status, out = doctor()
    assert status == 1
    line = next(line for line in out.splitlines() if line.startswith(f"FAIL  us.{INPAINT}"))
    assert "[retired]" in line and "reached the end of its life" in line
    assert "FAILED" in out.splitlines()[-1]


def test_legacy_and_vanished_from_the_region_fail_too(doctor, stack):
    stack.engine.configure(lifecycle={
        SD35: {"status": "LEGACY", "legacyTime": "2026-01-01", "endOfLifeTime": "2099-01-01"},
        INPAINT: {"regions": ["eu-west-1"]}})
    status, out = doctor()
    assert status == 1
    assert f"FAIL  {SD35} [legacy]" in out and f"FAIL  us.{INPAINT} [not_in_region]" in out
