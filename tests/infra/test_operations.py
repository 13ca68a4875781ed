"""The `operations` context key at synth: which Image Services the worker may call (IAM) and is told
about (IMG2IMG_OPERATION_MODELS, IMG2IMG_ALLOWED_MODEL_IDS), and nothing for the ones left out."""
from __future__ import annotations

import json
import re

import pytest

from img2img.operations import BY_NAME, PROFILE_REGIONS, default_models
from infra.config import ConfigError
from infra_synth import (
    build,
    one,
    render,
    resources,
    role_policies,
    service_arns,
    synth,
    with_action,
    worker_statements,
)

pytestmark = pytest.mark.infra

INPAINT = BY_NAME["inpaint"]
# A model a deployment might switch erase to (a newer version, say): granted and announced exactly.
ERASE_V2 = "us.stability.stable-image-erase-object-v2:0"
IMAGE_TO_IMAGE_MODELS = ("stability.sd3-5-large-v1:0", "stability.stable-diffusion-xl-v1")


@pytest.fixture(scope="module")
def inpaint_only(tmp_path_factory):
    return synth({"operations": ["inpaint"]}, tmp_path_factory.mktemp("inpaint-only"))


@pytest.fixture(scope="module")
def overridden(tmp_path_factory):
    return synth({"operations": json.dumps({"erase": ERASE_V2, "inpaint": INPAINT.default_model_id})},
                 tmp_path_factory.mktemp("overridden"))


@pytest.fixture(scope="module")
def no_operations(tmp_path_factory):
    return synth({"operations": "none"}, tmp_path_factory.mktemp("no-operations"))


def bedrock_resources(synth) -> set[str]:
    (statement,) = with_action(worker_statements(synth), "bedrock:")
    return resources(statement)


def service_grants(synth) -> set[str]:
    """The Bedrock resources beyond image-to-image's two foundation models and the translation model."""
    return {r for r in bedrock_resources(synth) if not r.endswith(IMAGE_TO_IMAGE_MODELS)
            and "nova-2-lite" not in r}


def env_of(synth, prefix: str = "WorkerFunction") -> dict:
    return one(synth, "AWS::Lambda::Function", prefix)[1]["Properties"]["Environment"]["Variables"]


def test_default_grants_every_profile_and_its_three_regions(default):
    grants = service_grants(default)
    assert grants == service_arns(default_models())
    profiles = {r for r in grants if ":inference-profile/" in r}
    assert len(profiles) == 13 and len(grants) == 13 * (1 + len(PROFILE_REGIONS)) == 52
    assert {r.split(":bedrock:")[1].split(":")[0] for r in grants - profiles} == set(PROFILE_REGIONS)
    assert not any("*" in r for r in grants)


def test_default_environment_names_all_thirteen(default):
    env = env_of(default)
    assert json.loads(env["IMG2IMG_OPERATION_MODELS"]) == default_models()
    assert set(env["IMG2IMG_ALLOWED_MODEL_IDS"].split(",")) == {*IMAGE_TO_IMAGE_MODELS, *default_models().values()}


def test_a_list_enables_only_those(inpaint_only):
    assert service_grants(inpaint_only) == service_arns([INPAINT.default_model_id])
    env = env_of(inpaint_only)
    assert json.loads(env["IMG2IMG_OPERATION_MODELS"]) == {"inpaint": INPAINT.default_model_id}
    assert env["IMG2IMG_ALLOWED_MODEL_IDS"].split(",") == [*IMAGE_TO_IMAGE_MODELS, INPAINT.default_model_id]


def test_an_override_is_granted_and_announced(overridden):
    grants = service_grants(overridden)
    assert grants == service_arns([ERASE_V2, INPAINT.default_model_id])
    assert not any(BY_NAME["erase"].model in r for r in grants)  # the default erase model: not granted
    env = env_of(overridden)
    assert json.loads(env["IMG2IMG_OPERATION_MODELS"]) == {"erase": ERASE_V2, "inpaint": INPAINT.default_model_id}
    assert ERASE_V2 in env["IMG2IMG_ALLOWED_MODEL_IDS"].split(",")


def test_none_grants_no_service(no_operations):
    assert service_grants(no_operations) == set()
    assert {r for r in bedrock_resources(no_operations) if "nova-2-lite" not in r} == {
        f"arn:${{AWS::Partition}}:bedrock:us-west-2::foundation-model/{m}" for m in IMAGE_TO_IMAGE_MODELS}
    env = env_of(no_operations)
    assert env["IMG2IMG_OPERATION_MODELS"] == "{}"  # `{}` = none; unset would mean all thirteen
    assert env["IMG2IMG_ALLOWED_MODEL_IDS"].split(",") == list(IMAGE_TO_IMAGE_MODELS)


@pytest.mark.parametrize("prefix", ["WorkerDirectFunction", "ApiFunction"])
def test_direct_and_api_functions_get_the_same_operations(inpaint_only, prefix):
    env = env_of(inpaint_only, prefix)
    assert env["IMG2IMG_OPERATION_MODELS"] == env_of(inpaint_only)["IMG2IMG_OPERATION_MODELS"]
    assert env["IMG2IMG_ALLOWED_MODEL_IDS"] == env_of(inpaint_only)["IMG2IMG_ALLOWED_MODEL_IDS"]


def test_api_role_gets_no_bedrock_even_with_all_operations(default):
    role_id, _ = one(default, "AWS::IAM::Role", "ApiRole")
    policies = role_policies(default, role_id)
    assert policies and not any("bedrock:" in json.dumps(p) for p in policies)


def test_worker_inline_policies_fit_iams_quota(default):
    """IAM refuses a role whose inline policies exceed 10,240 characters (whitespace excluded): all
    thirteen services must still deploy, in the longest partition/region/account names."""
    role_id, _ = one(default, "AWS::IAM::Role", "WorkerRole")
    worker_statements(default)  # no overflow managed policies either
    size = 0
    for document in role_policies(default, role_id):
        text = json.dumps(render(document), separators=(",", ":"))
        text = (text.replace("${AWS::Partition}", "aws-us-gov").replace("${AWS::Region}", "ap-southeast-5")
                .replace("${AWS::AccountId}", "123456789012"))
        # a GetAtt ARN of a bucket, table, queue, bus or log group: at most ~140 characters
        size += len(re.sub(r"\$\{[A-Za-z0-9]+\.Arn\}", "x" * 140, text))
    assert size < 10_240


def test_unknown_operation_stops_synth(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown operations \['upscale'\]: known are upscale-creative, "
                                          r"upscale-conservative, upscale-fast, inpaint"):
        build({"operations": "upscale,inpaint"}, outdir=tmp_path)
