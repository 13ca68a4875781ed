"""Session-scoped synths of the CDK app: each configuration is synthesized once per test process
(`aws:cdk:bundling-stacks: []`: no bundling except in test_bundling.py)."""
from __future__ import annotations

import pytest

from infra_synth import API_KEY_EVENTBRIDGE, CUSTOM, SECURE, Synth, synth


@pytest.fixture(scope="session")
def default(tmp_path_factory) -> Synth:
    return synth(None, tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="session")
def custom(tmp_path_factory) -> Synth:
    return synth(CUSTOM, tmp_path_factory.mktemp("custom"))


@pytest.fixture(scope="session")
def secure(tmp_path_factory) -> Synth:
    return synth(SECURE, tmp_path_factory.mktemp("secure"))


@pytest.fixture(scope="session")
def api_key_eventbridge(tmp_path_factory) -> Synth:
    return synth(API_KEY_EVENTBRIDGE, tmp_path_factory.mktemp("api-key-eventbridge"))
