"""Where each configured model can be invoked: a synth-time error instead of a runtime access_denied."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from img2img.operations import PROFILE_REGIONS, default_models
from infra.config import ConfigError, PipelineConfig
from infra.regions import DEFAULT_BEDROCK_REGION, SD35_LARGE, SDXL_V1, invocable_from, serving_all
from infra_synth import ROOT, Synth, build, render, with_action, worker_statements

pytestmark = pytest.mark.infra


def test_the_table_knows_the_configured_defaults():
    assert invocable_from(SD35_LARGE) == ("us-west-2",)
    assert invocable_from(SDXL_V1) is None  # end of life everywhere: granted, not checked
    for model_id in default_models().values():
        assert invocable_from(model_id) == PROFILE_REGIONS
    assert invocable_from("global.x.y-v1:0") is None
    assert invocable_from("arn:aws:bedrock:us-east-1::foundation-model/x") is None
    assert invocable_from("vendor.unknown-v1:0") is None


def test_the_default_bedrock_region_serves_every_default_model():
    config = PipelineConfig()
    assert config.bedrock_region == DEFAULT_BEDROCK_REGION
    assert config.check_bedrock_region("us-east-1") == DEFAULT_BEDROCK_REGION  # stack anywhere: Bedrock there
    assert config.check_bedrock_region(None) == DEFAULT_BEDROCK_REGION
    assert DEFAULT_BEDROCK_REGION in serving_all(config.model_ids)


@pytest.mark.parametrize("context,stack_region,message", [
    ({"bedrockRegion": ""}, "us-east-1",
     "the stack's region us-east-1 (bedrockRegion is empty) cannot invoke stability.sd3-5-large-v1:0 "
     "(offered in us-west-2): set -c bedrockRegion=us-west-2"),
    ({"bedrockRegion": "eu-west-1"}, "us-west-2",
     "bedrockRegion=eu-west-1 cannot invoke stability.sd3-5-large-v1:0 (offered in us-west-2), "
     "us.stability.stable-creative-upscale-v1:0 (offered in us-east-1, us-east-2, us-west-2)"),
    ({"bedrockRegion": "eu-west-1", "operations": "none", "modelId": "eu.stability.sd3-5-large-v1:0",
      "additionalModelIds": SD35_LARGE, "translationModelId": ""}, None,
     "bedrockRegion=eu-west-1 cannot invoke stability.sd3-5-large-v1:0 (offered in us-west-2): "
     "no single region serves all of them"),
])
def test_a_region_that_cannot_invoke_a_model_is_a_config_error(context, stack_region, message):
    config = PipelineConfig.from_context(context)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.check_bedrock_region(stack_region)


def test_image_services_only_from_their_profile_regions():
    config = PipelineConfig.from_context({"bedrockRegion": "", "modelId": "us.stability.sd3-5-large-v1:0",
                                          "additionalModelIds": ""})
    for region in PROFILE_REGIONS:
        assert config.check_bedrock_region(region) == region
    with pytest.raises(ConfigError, match="us-west-1"):
        config.check_bedrock_region("us-west-1")


def test_stack_in_us_east_1_grants_bedrock_in_us_west_2(tmp_path):
    """What `npx cdk synth` builds with no profile (the CLI pins us-east-1): IAM names us-west-2 for SD3.5."""
    done = synth_in_region("us-east-1", tmp_path)
    (statement,) = with_action(worker_statements(done), "bedrock:")
    arns = set(render(statement["Resource"]))
    assert "arn:${AWS::Partition}:bedrock:us-west-2::foundation-model/stability.sd3-5-large-v1:0" in arns
    assert not [a for a in arns if a.startswith("arn:${AWS::Partition}:bedrock:us-east-1::foundation-model/"
                                                 "stability.sd3-5")]
    functions = [r for r in done.resources.values() if r["Type"] == "AWS::Lambda::Function"
                 and r["Properties"]["Handler"] in ("img2img.handlers.sqs_worker.handler",
                                                    "img2img.handlers.direct.handler", "img2img.handlers.api.handler")]
    assert len(functions) == 3  # the functions that run jobs: the API's settings match the worker's
    assert {f["Properties"]["Environment"]["Variables"]["IMG2IMG_BEDROCK_REGION"] for f in functions} == {"us-west-2"}


def synth_in_region(region: str, outdir, overrides=None) -> Synth:
    app, stack, config = build(overrides, outdir=outdir, env=cdk.Environment(account="123456789012", region=region))
    return Synth(app, stack, config, Template.from_stack(stack), outdir)


def test_app_fails_in_one_line_naming_model_and_regions(tmp_path):
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path), "CDK_DEFAULT_REGION": "eu-west-1",
           "CDK_DEFAULT_ACCOUNT": "123456789012", "PYTHONPATH": f"{ROOT / 'lambda_src'}{os.pathsep}{ROOT}",
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
           "CDK_CONTEXT_JSON": '{"bedrockRegion": "", "aws:cdk:bundling-stacks": []}'}
    done = subprocess.run([sys.executable, str(ROOT / "app.py")], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("bedrock-img2img: invalid configuration: the stack's region eu-west-1")
    assert "stability.sd3-5-large-v1:0 (offered in us-west-2)" in line and "bedrockRegion=us-west-2" in line


def test_default_synth_is_env_agnostic_and_still_names_us_west_2(default):
    assert default.config.bedrock_region == "us-west-2"
    (statement,) = with_action(worker_statements(default), "bedrock:")
    assert "arn:${AWS::Partition}:bedrock:us-west-2::foundation-model/stability.sd3-5-large-v1:0" in set(
        render(statement["Resource"]))


def test_the_translation_model_is_region_checked_too():
    config = PipelineConfig.from_context({"bedrockRegion": "eu-west-1", "operations": "none",
                                          "modelId": "eu.stability.sd3-5-large-v1:0", "additionalModelIds": ""})
    with pytest.raises(ConfigError, match=re.escape("us.amazon.nova-2-lite-v1:0 (offered in us-east-1")):
        config.check_bedrock_region(None)
