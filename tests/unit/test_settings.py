"""Settings.from_env: the IMG2IMG_* variables, their limits, their errors, and to_env round trips."""
from __future__ import annotations

import pytest

from img2img.settings import DEFAULT_MODEL_ID, ENV, Settings, SettingsError

MINIMAL = {"IMG2IMG_OUTPUT_BUCKET": "out-bucket"}


def test_minimal_environment_gives_the_documented_defaults():
    s = Settings.from_env(MINIMAL)
    assert s == Settings(output_bucket="out-bucket")
    assert s.model_id == DEFAULT_MODEL_ID == "stability.sd3-5-large-v1:0"
    assert (s.output_format, s.max_input_pixels, s.bedrock_read_timeout) == ("png", 40_000_000, 150)
    assert s.allowed_model_ids == () and s.excluded_prefixes == () and s.default_params == {}


def test_output_bucket_is_required():
    with pytest.raises(SettingsError, match="IMG2IMG_OUTPUT_BUCKET must be set"):
        Settings.from_env({})
    with pytest.raises(SettingsError, match="IMG2IMG_OUTPUT_BUCKET"):
        Settings.from_env({"IMG2IMG_OUTPUT_BUCKET": ""})


def test_unrelated_variables_are_ignored():
    s = Settings.from_env({**MINIMAL, "AWS_REGION": "us-west-2", "IMG2IMG_UNKNOWN": "x", "PATH": "/bin"})
    assert s == Settings(output_bucket="out-bucket")


def test_every_variable_is_parsed():
    env = {
        **MINIMAL,
        "IMG2IMG_INPUT_BUCKET": "in-bucket",
        "IMG2IMG_OUTPUT_PREFIX": "generated/",
        "IMG2IMG_EXCLUDED_PREFIXES": " tmp/ , ,private/,",
        "IMG2IMG_IDEMPOTENCY_TABLE": "table",
        "IMG2IMG_JOB_QUEUE_URL": "https://sqs.us-west-2.amazonaws.com/123456789012/jobs",
        "IMG2IMG_EVENT_BUS_NAME": "bus",
        "IMG2IMG_MODEL_ID": "us.stability.sd3-5-large-v1:0",
        "IMG2IMG_BEDROCK_REGION": "us-west-2",
        "IMG2IMG_ALLOWED_MODEL_IDS": "stability.sd3-5-large-v1:0,stability.stable-diffusion-xl-v1",
        "IMG2IMG_DEFAULT_PROMPT": "a watercolor, soft light",
        "IMG2IMG_DEFAULT_PARAMS": '{"seed": 7, "negative_prompt": "blurry"}',
        "IMG2IMG_OUTPUT_FORMAT": "webp",
        "IMG2IMG_MAX_INPUT_BYTES": "1048576",
        "IMG2IMG_MAX_INPUT_PIXELS": "4096",
        "IMG2IMG_SIDECAR_GRACE_SECONDS": "0",
        "IMG2IMG_MAX_RECEIVE_COUNT": "3",
        "IMG2IMG_BEDROCK_READ_TIMEOUT": "900",
        "IMG2IMG_BEDROCK_MAX_ATTEMPTS": "1",
        "IMG2IMG_BATCH_CONCURRENCY": "64",
        "IMG2IMG_IDEMPOTENCY_TTL_SECONDS": "60",
        "IMG2IMG_API_PREFIX": "http/",
        "IMG2IMG_API_UPLOAD_PREFIX": "browser/",
        "IMG2IMG_API_SYNC_BUDGET_SECONDS": "20",
        "IMG2IMG_API_PRESIGN_SECONDS": "300",
        "IMG2IMG_API_MAX_INLINE_BYTES": "1048576",
        "IMG2IMG_API_CORS_ORIGINS": "https://app.example.com",
        "IMG2IMG_OPERATION_MODELS": '{"inpaint": "us.stability.stable-image-inpaint-v1:0"}',
        "IMG2IMG_C2PA_KMS_KEY_ID": "arn:aws:kms:us-west-2:123456789012:key/abc",
        "IMG2IMG_C2PA_CERTIFICATE_CHAIN": "/img2img/c2pa-chain",
        "IMG2IMG_C2PA_TIMESTAMP_URL": "http://timestamp.example.com",
        "IMG2IMG_TRANSLATION_MODEL_ID": "us.amazon.nova-2-lite-v1:0",
        "IMG2IMG_BULK_SOURCE_BUCKETS": "catalogue,archive",
        "IMG2IMG_BULK_FUNCTION_ARN": "arn:aws:lambda:us-west-2:123456789012:function:bulk",
        "IMG2IMG_BULK_ROLE_ARN": "arn:aws:iam::123456789012:role/bulk",
        "IMG2IMG_QUOTA_TABLE": "quota-table",
        "IMG2IMG_MODEL_QUOTAS": '{"default": 30, "us.stability.sd3-5-large-v1:0": 12}',
        "IMG2IMG_BULK_MAX_COST_USD": "250",
    }
    s = Settings.from_env(env)
    assert s.bulk_source_buckets == ("catalogue", "archive") and s.bulk_max_cost_usd == 250
    assert s.bulk_function_arn.endswith(":function:bulk") and s.bulk_role_arn.endswith(":role/bulk")
    assert s.quota_table == "quota-table" and s.budgets.rpm_for("us.stability.sd3-5-large-v1:0") == 12
    assert s.budgets.rpm_for("stability.stable-diffusion-xl-v1") == 30
    assert s.signs_c2pa and s.c2pa_certificate_chain == "/img2img/c2pa-chain"
    assert s.translation_model_id == "us.amazon.nova-2-lite-v1:0"
    assert s.operation_models == {"inpaint": "us.stability.stable-image-inpaint-v1:0"}
    assert (s.api_prefix, s.api_upload_prefix, s.api_sync_budget_seconds, s.api_presign_seconds,
            s.api_max_inline_bytes) == ("http/", "browser/", 20, 300, 1048576)
    assert s.excluded_prefixes == ("tmp/", "private/")
    assert s.bedrock_region == "us-west-2"
    assert s.allowed_model_ids == ("stability.sd3-5-large-v1:0", "stability.stable-diffusion-xl-v1")
    assert s.default_params == {"seed": 7, "negative_prompt": "blurry"}
    assert s.default_prompt == "a watercolor, soft light"
    assert (s.max_input_bytes, s.max_input_pixels, s.sidecar_grace_seconds) == (1048576, 4096, 0)
    assert (s.bedrock_read_timeout, s.bedrock_max_attempts, s.batch_concurrency) == (900, 1, 64)
    assert (s.output_format, s.model_id, s.input_bucket, s.output_prefix) == (
        "webp", "us.stability.sd3-5-large-v1:0", "in-bucket", "generated/")
    assert set(ENV.values()) <= set(env)


@pytest.mark.parametrize("quotas", ['{"m": 0}', '{"default": "60"}', "[60]"])
def test_a_malformed_model_quota_is_a_settings_error(quotas):
    with pytest.raises(SettingsError, match="IMG2IMG_MODEL_QUOTAS"):
        Settings.from_env({**MINIMAL, "IMG2IMG_MODEL_QUOTAS": quotas})


@pytest.mark.parametrize("name, low, high", [
    ("IMG2IMG_MAX_INPUT_BYTES", 1, 500 * 1024 * 1024),
    ("IMG2IMG_MAX_INPUT_PIXELS", 4096, 500_000_000),
    ("IMG2IMG_SIDECAR_GRACE_SECONDS", 0, 900),
    ("IMG2IMG_MAX_RECEIVE_COUNT", 1, 1000),
    ("IMG2IMG_BEDROCK_READ_TIMEOUT", 120, 900),
    ("IMG2IMG_BEDROCK_MAX_ATTEMPTS", 1, 10),
    ("IMG2IMG_BATCH_CONCURRENCY", 1, 64),
    ("IMG2IMG_IDEMPOTENCY_TTL_SECONDS", 60, 365 * 24 * 3600),
])
def test_integer_limits_are_inclusive_and_enforced(name, low, high):
    field = next(k for k, v in ENV.items() if v == name)
    assert getattr(Settings.from_env({**MINIMAL, name: str(low)}), field) == low
    assert getattr(Settings.from_env({**MINIMAL, name: str(high)}), field) == high
    for bad in (low - 1, high + 1):
        with pytest.raises(SettingsError) as info:
            Settings.from_env({**MINIMAL, name: str(bad)})
        assert f"{name}={bad} is outside {low}..{high}" == str(info.value)


@pytest.mark.parametrize("raw", ["ten", "1.5", "1e3", "0x10"])
def test_non_integer_values_name_the_variable(raw):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**MINIMAL, "IMG2IMG_BATCH_CONCURRENCY": raw})
    assert str(info.value) == f"IMG2IMG_BATCH_CONCURRENCY={raw!r} is not an integer"


def test_sidecar_grace_cannot_exceed_the_sqs_delay_limit():
    with pytest.raises(SettingsError, match="IMG2IMG_SIDECAR_GRACE_SECONDS=901"):
        Settings.from_env({**MINIMAL, "IMG2IMG_SIDECAR_GRACE_SECONDS": "901"})


def test_read_timeout_below_image_generation_time_is_rejected():
    with pytest.raises(SettingsError, match="IMG2IMG_BEDROCK_READ_TIMEOUT=60"):
        Settings.from_env({**MINIMAL, "IMG2IMG_BEDROCK_READ_TIMEOUT": "60"})


@pytest.mark.parametrize("raw, fragment", [("{bad json", "is not JSON"), ("[1, 2]", "must be a JSON object"),
                                           ('"a cat"', "must be a JSON object"), ("null", "must be a JSON object")])
def test_default_params_must_be_a_json_object(raw, fragment):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**MINIMAL, "IMG2IMG_DEFAULT_PARAMS": raw})
    assert "IMG2IMG_DEFAULT_PARAMS" in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("fmt", ["gif", "PNG", "jpg", "tiff"])
def test_output_format_must_be_png_jpeg_or_webp(fmt):
    with pytest.raises(SettingsError, match="IMG2IMG_OUTPUT_FORMAT must be png, jpeg or webp"):
        Settings.from_env({**MINIMAL, "IMG2IMG_OUTPUT_FORMAT": fmt})


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("IMG2IMG_OUTPUT_BUCKET", "from-os")
    monkeypatch.setenv("IMG2IMG_BATCH_CONCURRENCY", "7")
    s = Settings.from_env()
    assert (s.output_bucket, s.batch_concurrency) == ("from-os", 7)


# ---- to_env ---------------------------------------------------------------------------------------

ROUND_TRIP = [
    Settings(output_bucket="out"),
    Settings(output_bucket="out", input_bucket="in", output_prefix="gen/", excluded_prefixes=("tmp/", "x/"),
             idempotency_table="t", job_queue_url="https://q", event_bus_name="bus",
             model_id="stability.stable-diffusion-xl-v1",
             allowed_model_ids=("stability.stable-diffusion-xl-v1", "stability.sd3-5-large-v1:0"),
             default_prompt="an oil painting, 一艘宇宙飞船", default_params={"seed": 3, "text_prompts": [
                 {"text": "a", "weight": 1.0}], "extras": {"nested": [1, 2]}},
             output_format="jpeg", max_input_bytes=5, max_input_pixels=5000, sidecar_grace_seconds=0,
             max_receive_count=2, bedrock_read_timeout=300, bedrock_max_attempts=5, batch_concurrency=2,
             idempotency_ttl_seconds=3600),
]


@pytest.mark.parametrize("settings", ROUND_TRIP)
def test_to_env_round_trips(settings):
    env = settings.to_env()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    assert set(env) <= set(ENV.values())
    assert Settings.from_env(env) == settings


def test_to_env_omits_empty_values_and_writes_compact_sorted_json():
    env = Settings(output_bucket="out", default_params={"seed": 1, "cfg_scale": 7}).to_env()
    assert "IMG2IMG_INPUT_BUCKET" not in env and "IMG2IMG_ALLOWED_MODEL_IDS" not in env
    assert env["IMG2IMG_DEFAULT_PARAMS"] == '{"cfg_scale":7,"seed":1}'
    assert env["IMG2IMG_OUTPUT_BUCKET"] == "out" and env["IMG2IMG_SIDECAR_GRACE_SECONDS"] == "120"
    assert "IMG2IMG_DEFAULT_PARAMS" not in Settings(output_bucket="out").to_env()


def test_to_env_of_parsed_settings_is_stable():
    env = Settings.from_env({**MINIMAL, "IMG2IMG_EXCLUDED_PREFIXES": "a/, b/",
                             "IMG2IMG_DEFAULT_PARAMS": '{ "seed" : 1 }'}).to_env()
    assert env["IMG2IMG_EXCLUDED_PREFIXES"] == "a/,b/"
    assert Settings.from_env(env).to_env() == env



def test_every_number_has_its_default_and_range_in_the_limits_table():
    """limits.py is the one home of numeric defaults and ranges (infra/config.py reads it too)."""
    from dataclasses import fields

    from img2img.limits import LIMITS

    numbers = {f.name: f.default for f in fields(Settings) if f.type == "int"}
    assert set(numbers) == set(LIMITS)
    for name, default in numbers.items():
        assert default == LIMITS[name].default and LIMITS[name].allows(default), name


def test_operations_default_to_all_thirteen_and_none_stays_none():
    from img2img.operations import SERVICES

    everything = Settings.from_env({"IMG2IMG_OUTPUT_BUCKET": "out"}).operation_models
    assert everything == {op.name: f"us.{op.model}" for op in SERVICES} and len(everything) == 13
    none = Settings.from_env({"IMG2IMG_OUTPUT_BUCKET": "out", "IMG2IMG_OPERATION_MODELS": "{}"})
    assert none.operation_models == {}
    assert Settings.from_env(none.to_env()).operation_models == {}  # `{}` survives the round trip


@pytest.mark.parametrize("raw, says", [
    ('{"repaint": "x"}', "unknown operations ['repaint']"),
    ('{"inpaint": ""}', "must be non-empty strings"),
    ('["inpaint"]', "must be a JSON object"),
    ("{inpaint", "is not JSON"),
])
def test_bad_operation_models_are_configuration_errors(raw, says):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"IMG2IMG_OUTPUT_BUCKET": "out", "IMG2IMG_OPERATION_MODELS": raw})
    assert says in str(info.value) and "IMG2IMG_OPERATION_MODELS" in str(info.value)


@pytest.mark.parametrize("env", [{"IMG2IMG_C2PA_KMS_KEY_ID": "k"}, {"IMG2IMG_C2PA_CERTIFICATE_CHAIN": "/p"}])
def test_a_c2pa_key_without_its_chain_is_a_configuration_error(env):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"IMG2IMG_OUTPUT_BUCKET": "out", **env})
    assert "go together" in str(info.value)
