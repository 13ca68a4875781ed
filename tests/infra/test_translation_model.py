"""The translation model at synth: granted (its `us.` profile and the regions it routes to) and named in
the functions' environment; `translationModelId=""` turns translation off and grants nothing for it."""
from __future__ import annotations

import pytest

from infra.config import DEFAULT_TRANSLATION_MODEL_ID
from infra_synth import one, resources, service_arns, synth, with_action, worker_statements

pytestmark = pytest.mark.infra


def bedrock_resources(result) -> set[str]:
    (statement,) = with_action(worker_statements(result), "bedrock:")
    return resources(statement)


def env_of(result, prefix: str) -> dict:
    return one(result, "AWS::Lambda::Function", prefix)[1]["Properties"]["Environment"]["Variables"]


def test_the_default_translates_with_nova_2_lite_and_grants_exactly_it(default):
    assert service_arns([DEFAULT_TRANSLATION_MODEL_ID]) <= bedrock_resources(default)
    assert [r for r in bedrock_resources(default) if "nova" in r] == sorted(
        service_arns([DEFAULT_TRANSLATION_MODEL_ID]), key=list(bedrock_resources(default)).index)
    for prefix in ("WorkerFunction", "WorkerDirectFunction"):
        assert env_of(default, prefix)["IMG2IMG_TRANSLATION_MODEL_ID"] == DEFAULT_TRANSLATION_MODEL_ID
    # the allow-list of image models never includes the text model
    assert DEFAULT_TRANSLATION_MODEL_ID not in env_of(default, "WorkerFunction")["IMG2IMG_ALLOWED_MODEL_IDS"]


def test_empty_turns_translation_off(tmp_path):
    result = synth({"translationModelId": ""}, tmp_path)
    assert not [r for r in bedrock_resources(result) if "nova" in r]
    assert "IMG2IMG_TRANSLATION_MODEL_ID" not in env_of(result, "WorkerFunction")
