"""Context parsing and validation (pure Python, no synth) and the one-line error of `app.py`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields

import pytest

from img2img.core.formats import OUTPUT_FORMATS
from img2img.limits import LIMITS
from img2img.operations import BY_NAME, SERVICES
from img2img.settings import ENV, Settings, SettingsError
from infra.config import ConfigError, PipelineConfig, _camel
from infra_synth import CDK_JSON_CONTEXT, ROOT

pytestmark = pytest.mark.infra


def test_cdk_json_lists_every_key_with_the_code_default():
    defaults = PipelineConfig().as_context()
    assert {_camel(f.name) for f in fields(PipelineConfig)} == set(defaults)
    for key, value in defaults.items():
        assert key in CDK_JSON_CONTEXT, f"cdk.json lacks context key {key}"
        assert CDK_JSON_CONTEXT[key] == value, key
    assert PipelineConfig.from_context(CDK_JSON_CONTEXT) == PipelineConfig()


def test_cdk_json_keeps_cli_settings():
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    assert cdk_json["app"] == ".venv/bin/python app.py"
    assert cdk_json["notices"] is False
    assert cdk_json["context"]["cli-telemetry"] is False


def test_cli_strings_are_coerced():
    c = PipelineConfig.from_context({
        "batchSize": "2", "workerMemoryMb": " 2048 ", "additionalModelIds": "a.b-v1,c.d-v1:0",
        "excludedPrefixes": '["tmp/", "drafts/"]', "defaultParams": '{"strength": 0.6}',
        "alarmEmail": "ops@example.com", "modelId": "us.stability.sd3-5-large-v1:0", "operations": "none"})
    assert c.batch_size == 2 and c.worker_memory_mb == 2048
    assert c.additional_model_ids == ("a.b-v1", "c.d-v1:0")
    assert c.excluded_prefixes == ("tmp/", "drafts/")
    assert c.default_params == {"strength": 0.6}
    assert c.model_ids == ("us.stability.sd3-5-large-v1:0", "a.b-v1", "c.d-v1:0")


def test_empty_list_clears_additional_models():
    c = PipelineConfig.from_context({"additionalModelIds": "", "operations": []})
    assert c.model_ids == ("stability.sd3-5-large-v1:0",)


def test_derived_limits():
    c = PipelineConfig.from_context({"workerTimeoutSeconds": 900, "batchWindowSeconds": 300,
                                     "bedrockMaxConcurrency": 9, "batchSize": 4})
    assert c.queue_visibility_timeout_seconds == 5700 <= 43200  # SQS's maximum
    assert c.direct_reserved_concurrency == 2 and c.worker_bedrock_share == 7
    assert c.event_source_max_concurrency == 2  # ceil(7 / 4)
    assert PipelineConfig.from_context({"bedrockMaxConcurrency": 1}).event_source_max_concurrency == 2


@pytest.mark.parametrize("context,message", [
    ({"batchSize": "40"}, "context batchSize=40 is invalid: 1 .. 10"),
    ({"batchSize": "four"}, "context batchSize='four' is invalid: expected a whole number"),
    ({"batchSize": 2.5}, "context batchSize=2.5 is invalid: expected a whole number"),
    ({"batchSize": True}, "context batchSize=True is invalid"),
    ({"architecture": "arm"}, "context architecture='arm' is invalid: arm64 or x86_64"),
    ({"pythonVersion": "3.11"}, "context pythonVersion='3.11' is invalid: 3.12 or 3.13"),
    ({"workerTimeoutSeconds": 300}, "context workerTimeoutSeconds=300 is invalid: 330 .. 900"),
    ({"modelId": "not a model"}, "context modelId='not a model' is invalid"),
    ({"additionalModelIds": ["ok.model-v1", "bad model"]}, "additionalModelIds has 'bad model'"),
    ({"logRetentionDays": 31}, "context logRetentionDays=31 is invalid: one of CloudWatch's retention periods"),
    ({"encryption": "sse-c"}, "context encryption='sse-c' is invalid: s3-managed or kms"),
    ({"removalPolicy": "snapshot"}, "context removalPolicy='snapshot' is invalid: retain or destroy"),
    ({"alarmEmail": "ops"}, "context alarmEmail='ops' is invalid: an e-mail address"),
    ({"alarmTopicArn": "ops"}, "context alarmTopicArn='ops' is invalid: an SNS topic ARN"),
    ({"bedrockRegion": "oregon"}, "context bedrockRegion='oregon' is invalid"),
    ({"defaultParams": "[1]"}, "context defaultParams='[1]' is invalid: expected a JSON object"),
    ({"excludedPrefixes": "/tmp"}, "context excludedPrefixes=('/tmp',) is invalid"),
    ({"eventArchiveDays": -1}, "context eventArchiveDays=-1 is invalid"),
    ({"filterRateAlarmPercent": 0}, "context filterRateAlarmPercent=0 is invalid: 1 .. 100"),
    ({"operations": 5}, 'context operations=5 is invalid: expected "all", "none", a list of operation names'),
    ({"operations": "[1]"}, "context operations='[1]' is invalid"),
    ({"operations": {"inpaint": "bad id"}}, "context operations has 'bad id' for inpaint: not a Bedrock model id"),
    ({"operations": {"inpaint": ""}}, "context operations has '' for inpaint"),
])
def test_invalid_values_name_the_key_and_what_is_allowed(context, message):
    with pytest.raises(ConfigError) as exc:
        PipelineConfig.from_context(context)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_app_reports_config_errors_in_one_line(tmp_path):
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path), "CDK_CONTEXT_JSON": json.dumps({"batchSize": "40"}),
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "invalid configuration" in line]
    assert lines == ["bedrock-img2img: invalid configuration: context batchSize=40 is invalid: 1 .. 10"]


# ---- config and the worker's settings agree ---------------------------------------------------------

SHARED = sorted({f.name for f in fields(PipelineConfig)} & {f.name for f in fields(Settings)})


def test_config_defaults_are_the_workers_defaults():
    """A default deployment runs the worker exactly with the worker's own defaults."""
    assert len(SHARED) > 10
    deployed = PipelineConfig().worker_settings(input_bucket="in", output_bucket="out", idempotency_table="t",
                                                job_queue_url="q", event_bus_name="b")
    worker = Settings(output_bucket="out")
    # Except where Bedrock is called: the worker's default is its own region, a deployment's is the region
    # that serves the configured models (infra/regions.py, test_regions.py).
    assert (PipelineConfig().bedrock_region, worker.bedrock_region) == ("us-west-2", "")
    # And translation: a bare worker has no text model to call; a deployment names one (and grants it).
    assert (PipelineConfig().translation_model_id, worker.translation_model_id) == ("us.amazon.nova-2-lite-v1:0", "")
    for name in set(SHARED) - {"bedrock_region", "translation_model_id"}:
        assert getattr(PipelineConfig(), name) == getattr(worker, name), name
    for name in LIMITS.keys() - {"batch_concurrency"}:  # that one follows batchSize, an SQS knob
        assert getattr(deployed, name) == LIMITS[name].default == getattr(worker, name), name


@pytest.mark.parametrize("name", sorted(n for n in LIMITS if n in SHARED))
def test_config_and_worker_accept_exactly_the_same_range(name):
    """What `cdk synth` accepts the worker accepts, and what it refuses the worker refuses too."""
    low, high = LIMITS[name].minimum, LIMITS[name].maximum
    variable = ENV[name]
    for value in (low, high):
        assert getattr(PipelineConfig.from_context({_camel(name): value}), name) == value
        assert getattr(Settings.from_env({"IMG2IMG_OUTPUT_BUCKET": "b", variable: str(value)}), name) == value
    for value in (low - 1, high + 1):
        with pytest.raises(ConfigError, match=f"context {_camel(name)}={value} is invalid: {low} .. {high}"):
            PipelineConfig.from_context({_camel(name): value})
        with pytest.raises(SettingsError, match=f"{variable}={value} is outside"):
            Settings.from_env({"IMG2IMG_OUTPUT_BUCKET": "b", variable: str(value)})


def test_config_and_worker_accept_the_same_output_formats():
    for fmt in (*OUTPUT_FORMATS, "gif", "PNG"):
        worker_ok = _accepts(SettingsError, Settings.from_env, {"IMG2IMG_OUTPUT_BUCKET": "b",
                                                                "IMG2IMG_OUTPUT_FORMAT": fmt})
        assert _accepts(ConfigError, PipelineConfig.from_context, {"outputFormat": fmt}) == worker_ok, fmt
        assert worker_ok == (fmt in OUTPUT_FORMATS)


def _accepts(error: type[Exception], parse, value) -> bool:
    try:
        parse(value)
    except error:
        return False
    return True


# ---- operations: which Image Services a deployment enables -------------------------------------------

@pytest.mark.parametrize("value", ["all", "ALL", None])
def test_all_operations_by_default_with_their_us_profiles(value):
    c = PipelineConfig.from_context({} if value is None else {"operations": value})
    assert c.operations == {op.name: f"us.{op.model}" for op in SERVICES}
    assert len(c.operations) == 13


@pytest.mark.parametrize("value", ["none", "", [], "[]", {}, "{}"])
def test_no_operations(value):
    c = PipelineConfig.from_context({"operations": value})
    assert c.operations == {}
    assert c.model_ids == PipelineConfig().model_ids[:2]  # image-to-image's models only


@pytest.mark.parametrize("value", [["inpaint", "erase"], "inpaint,erase", '["inpaint", "Erase"]', "Inpaint, erase"])
def test_names_enable_those_with_their_default_models(value):
    assert PipelineConfig.from_context({"operations": value}).operations == {
        "inpaint": "us.stability.stable-image-inpaint-v1:0", "erase": "us.stability.stable-image-erase-object-v1:0"}


def test_an_object_overrides_model_ids():
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    for value in ({"remove_background": arn}, json.dumps({"remove-background": arn})):
        assert PipelineConfig.from_context({"operations": value}).operations == {"remove-background": arn}


@pytest.mark.parametrize("value", [["inpaint", "paint-it-black"], "paint-it-black", {"paint-it-black": "a.b-v1:0"},
                                   ["image-to-image"]])
def test_unknown_operations_are_named_with_the_known_ones(value):
    with pytest.raises(ConfigError) as exc:
        PipelineConfig.from_context({"operations": value})
    message = str(exc.value)
    assert message.startswith("context operations names unknown operations [")
    assert all(name in message for name in BY_NAME)
    assert "\n" not in message


def test_worker_environment_carries_the_operations_and_allows_their_models():
    """What IAM grants (model_ids) is what the worker allows; the mapping reaches the worker as set."""
    override = "us.stability.stable-image-inpaint-v2:0"
    for context in ({}, {"operations": ["inpaint"]}, {"operations": {"inpaint": override}}, {"operations": "none"}):
        c = PipelineConfig.from_context(context)
        env = c.worker_settings(input_bucket="in", output_bucket="out", idempotency_table="t", job_queue_url="q",
                                event_bus_name="b").to_env()
        worker = Settings.from_env(env)  # the worker's own parsing accepts what synth wrote
        assert worker.operation_models == c.operations
        assert json.loads(env[ENV["operation_models"]]) == c.operations
        assert set(worker.allowed_model_ids) == {*c.operations.values(), "stability.sd3-5-large-v1:0",
                                                 "stability.stable-diffusion-xl-v1"}
