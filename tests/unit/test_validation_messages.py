"""Validation errors a user reads: field, source, bad value, what is allowed, all problems at once."""
from __future__ import annotations

import json

import pytest

from img2img.core import params as P
from img2img.core.errors import JobError
from img2img.core.pipeline import Pipeline
from img2img.models.registry import adapter_for
from img2img.models.sd35 import SD35Adapter
from img2img.models.sdxl import SDXLAdapter
from img2img.settings import Settings

SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"
SIDECAR_URI = "s3://in/photos/cat.jpg.json"
DEFAULTS_URI = "s3://in/photos/_defaults.json"
ADAPTERS = {SDXL: SDXLAdapter(), SD35: SD35Adapter()}
BOTH = pytest.mark.parametrize("model_id", [SDXL, SD35])


def merged(metadata=None, sidecar=None, defaults=None, model_id=SD35):
    layers = [P.deployment_layer(model_id, "png", "", {})]
    if defaults is not None:
        layers.append(P.folder_defaults_layer(defaults, DEFAULTS_URI))
    if metadata is not None:
        layers.extend(P.metadata_layers(metadata)[0])
    if sidecar is not None:
        layers.append(P.sidecar_layer(sidecar, SIDECAR_URI))
    return P.merge(layers)


def validate(model_id, **sources):
    return ADAPTERS[model_id].validate(model_id, merged(model_id=model_id, **sources))


def error_of(model_id, **sources) -> JobError:
    with pytest.raises(JobError) as info:
        validate(model_id, **sources)
    return info.value


def only_error(err: JobError) -> dict:
    assert err.code == "invalid_parameters"
    assert len(err.details["errors"]) == 1, err.details
    return err.details["errors"][0]


# ---- range and enum errors name field, source, value and what is allowed ---------------------------

def test_sdxl_cfg_scale_50_from_metadata():
    err = error_of(SDXL, metadata={"prompt": "a cat", "cfg-scale": "50"})
    entry = only_error(err)
    assert entry["field"] == "cfg_scale"
    assert entry["source"] == "metadata x-amz-meta-cfg-scale"
    assert entry["value"] == "50"
    assert entry["allowed"] == "a number from 0 to 35"
    assert err.message.startswith("invalid parameters: cfg_scale = \"50\" from metadata x-amz-meta-cfg-scale: ")
    assert "(allowed: a number from 0 to 35)" in err.message


@pytest.mark.parametrize("value", [35.5, 35.0001, -0.1])
def test_sdxl_cfg_scale_out_of_range_is_an_error_not_clamped(value):
    entry = only_error(error_of(SDXL, sidecar={"prompt": "a cat", "cfg_scale": value}))
    assert entry["field"] == "cfg_scale" and entry["value"] == value
    assert entry["source"] == f"sidecar {SIDECAR_URI}"


@pytest.mark.parametrize("value, expected", [(35, 35.0), ("35", 35.0), (0, 0.0), ("7.5", 7.5)])
def test_sdxl_cfg_scale_limits_are_inclusive_and_metadata_strings_are_typed(value, expected):
    job = validate(SDXL, sidecar={"prompt": "a cat", "cfg_scale": value})
    assert job.request["cfg_scale"] == expected


@pytest.mark.parametrize("steps", [5, 9, 51, "5", 30.5])
def test_sdxl_steps_out_of_range_or_fractional(steps):
    entry = only_error(error_of(SDXL, sidecar={"prompt": "a cat", "steps": steps}))
    assert entry["field"] == "steps"
    assert entry["value"] == steps
    assert entry["allowed"] == "an integer from 10 to 50"


@BOTH
def test_samples_2_is_rejected(model_id):
    entry = only_error(error_of(model_id, sidecar={"prompt": "a cat", "samples": 2}))
    assert entry["field"] == "samples" and entry["value"] == 2
    assert entry["allowed"].startswith("1")
    assert entry["source"] == f"sidecar {SIDECAR_URI}"


@pytest.mark.parametrize("model_id, top", [(SDXL, 4294967295), (SD35, 4294967294)])
def test_seed_upper_limit_per_model(model_id, top):
    assert validate(model_id, sidecar={"prompt": "a cat", "seed": top}).request["seed"] == top
    entry = only_error(error_of(model_id, sidecar={"prompt": "a cat", "seed": top + 1}))
    assert entry["field"] == "seed" and entry["value"] == top + 1
    assert f"0 to {top}" in entry["allowed"]


@BOTH
def test_negative_seed_is_rejected(model_id):
    entry = only_error(error_of(model_id, metadata={"prompt": "a cat", "seed": "-1"}))
    assert (entry["field"], entry["source"], entry["value"]) == ("seed", "metadata x-amz-meta-seed", "-1")


def test_sd35_seed_4294967295_is_out_of_range_even_though_sdxl_accepts_it():
    err = error_of(SD35, sidecar={"prompt": "a cat", "seed": 4294967295})
    assert "4294967294" in err.message


def test_unknown_style_preset_lists_the_presets():
    entry = only_error(error_of(SDXL, defaults={"prompt": "a cat", "style_preset": "vaporwave"}))
    assert entry["field"] == "style_preset" and entry["value"] == "vaporwave"
    assert entry["source"] == f"folder defaults {DEFAULTS_URI}"
    assert "photographic" in entry["allowed"] and "pixel-art" in entry["allowed"]


def test_unknown_sampler_lists_the_samplers():
    entry = only_error(error_of(SDXL, sidecar={"prompt": "a cat", "sampler": "EULER_A"}))
    assert entry["field"] == "sampler" and entry["value"] == "EULER_A"
    assert "K_EULER_ANCESTRAL" in entry["allowed"] and "DDIM" in entry["allowed"]


def test_unknown_clip_guidance_preset():
    entry = only_error(error_of(SDXL, sidecar={"prompt": "a cat", "clip_guidance_preset": "SIMPLE SLOW"}))
    assert entry["field"] == "clip_guidance_preset"
    assert "FAST_BLUE" in entry["allowed"]


def test_sdxl_empty_prompt_text_is_an_error_naming_the_prompt_item():
    entry = only_error(error_of(SDXL, metadata={"prompt": "a cat"},
                                sidecar={"text_prompts": [{"text": "a cat"}, {"text": ""}]}))
    assert entry["field"] == "text_prompts[1].text"
    assert entry["source"] == f"sidecar {SIDECAR_URI}"
    assert entry["value"] == ""


@pytest.mark.parametrize("model_id, limit", [(SDXL, 2000), (SD35, 10000)])
def test_prompt_length_limit_per_model(model_id, limit):
    assert validate(model_id, sidecar={"prompt": "x" * limit})
    err = error_of(model_id, sidecar={"prompt": "x" * (limit + 1)})
    entry = only_error(err)
    assert entry["field"] in ("text_prompts[0].text", "prompt")
    assert entry["source"] == f"sidecar {SIDECAR_URI}"
    assert str(limit) in entry["message"] and str(limit) in entry["allowed"]
    assert len(err.message) < 1500  # the 10 KB prompt is not pasted into the message


def test_sd35_joined_prompt_over_10000_characters_is_rejected():
    parts = [{"text": "y" * 6000}, {"text": "z" * 6000}]
    entry = only_error(error_of(SD35, sidecar={"text_prompts": parts}))
    assert entry["field"] == "prompt" and "10000" in entry["message"]


@pytest.mark.parametrize("model_id", [SDXL, SD35])
def test_strength_out_of_range_names_the_vocabulary(model_id):
    entry = only_error(error_of(model_id, metadata={"prompt": "a cat", "image-strength": "1.2"}))
    assert entry["field"] == "image_strength"
    assert entry["source"] == "metadata x-amz-meta-image-strength"
    assert "1 = keep the input" in entry["allowed"]
    entry = only_error(error_of(model_id, sidecar={"prompt": "a cat", "strength": "lots"}))
    assert entry["field"] == "strength" and entry["value"] == "lots"


@BOTH
def test_output_format_and_fit_are_checked(model_id):
    err = error_of(model_id, sidecar={"prompt": "a cat", "output_format": "gif", "fit": "stretch"})
    by_field = {e["field"]: e for e in err.details["errors"]}
    assert by_field["output_format"]["allowed"] == "png, jpeg, webp"
    assert by_field["fit"]["allowed"] == "crop, pad"


# ---- combinations ------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["step_schedule_start", "step_schedule_end"])
def test_step_schedule_fields_without_step_schedule_mode(field):
    entry = only_error(error_of(SDXL, sidecar={"prompt": "a cat", field: 0.6}))
    assert entry["field"] == field
    assert entry["source"] == f"sidecar {SIDECAR_URI}"
    assert "init_image_mode=STEP_SCHEDULE" in entry["message"]


def test_step_schedule_mode_accepts_its_fields_and_rejects_image_strength():
    job = validate(SDXL, sidecar={"prompt": "a cat", "init_image_mode": "STEP_SCHEDULE",
                                  "step_schedule_start": 0.6, "step_schedule_end": 0.1})
    assert "image_strength" not in job.request
    assert job.request["step_schedule_start"] == 0.6
    entry = only_error(error_of(SDXL, sidecar={"prompt": "a cat", "init_image_mode": "STEP_SCHEDULE",
                                               "image_strength": 0.4}))
    assert entry["field"] == "image_strength"
    assert "step_schedule_start = 1 - image_strength" in entry["message"]


@pytest.mark.parametrize("sampler", ["K_EULER", "DDIM", "K_DPMPP_2M"])
def test_clip_guidance_with_a_non_ancestral_sampler(sampler):
    entry = only_error(error_of(SDXL, sidecar={"prompt": "a cat", "clip_guidance_preset": "FAST_BLUE",
                                               "sampler": sampler}))
    assert entry["field"] == "sampler" and entry["value"] == sampler
    assert "ancestral" in entry["message"]
    assert "K_EULER_ANCESTRAL" in entry["allowed"]


@pytest.mark.parametrize("preset, sampler", [("FAST_BLUE", "K_EULER_ANCESTRAL"), ("NONE", "K_EULER"),
                                             ("SLOWEST", None)])
def test_clip_guidance_combinations_that_are_fine(preset, sampler):
    sidecar = {"prompt": "a cat", "clip_guidance_preset": preset}
    if sampler:
        sidecar["sampler"] = sampler
    assert validate(SDXL, sidecar=sidecar).request["clip_guidance_preset"] == preset


# ---- several errors at once ----------------------------------------------------------------------

def test_sdxl_reports_several_field_errors_together():
    err = error_of(SDXL, metadata={"prompt": "a cat", "cfg-scale": "50"},
                   sidecar={"steps": 5, "samples": 2, "style_preset": "vaporwave"})
    fields = {e["field"] for e in err.details["errors"]}
    assert fields == {"cfg_scale", "steps", "samples", "style_preset"}
    for name in fields:
        assert name in err.message
    assert "metadata x-amz-meta-cfg-scale" in err.message and f"sidecar {SIDECAR_URI}" in err.message


def test_sd35_reports_several_field_errors_together():
    err = error_of(SD35, sidecar={"prompt": "a cat", "seed": 4294967295, "samples": 2, "strength": 2})
    assert {e["field"] for e in err.details["errors"]} == {"seed", "samples", "strength"}


def test_sdxl_reports_field_errors_and_combination_errors_together():
    err = error_of(SDXL, sidecar={"prompt": "a cat", "cfg_scale": 50, "step_schedule_start": 0.5})
    assert {e["field"] for e in err.details["errors"]} == {"cfg_scale", "step_schedule_start"}


def test_sd35_reports_unmappable_fields_and_range_errors_together():
    err = error_of(SD35, sidecar={"prompt": "a cat", "style_preset": "anime", "seed": 4294967295})
    assert {e["field"] for e in err.details["errors"]} == {"style_preset", "seed"}


# ---- missing prompt ------------------------------------------------------------------------------

@BOTH
def test_only_a_negative_prompt_is_missing_parameters(model_id):
    err = error_of(model_id, metadata={"negative-prompt": "blurry"})
    assert err.code == "missing_parameters"
    assert "prompt" in err.message


@BOTH
def test_no_prompt_at_all_is_missing_parameters(model_id):
    err = error_of(model_id, sidecar={"seed": 3})
    assert err.code == "missing_parameters"


@BOTH
def test_whitespace_prompt_is_missing_parameters(model_id):
    assert error_of(model_id, metadata={"prompt": "   "}).code == "missing_parameters"


# ---- model ids --------------------------------------------------------------------------------

def pipeline(**settings) -> Pipeline:
    return Pipeline(Settings(output_bucket="out", **settings), store=None, model=None, registry=adapter_for)


def test_model_not_enabled_in_this_deployment():
    pipe = pipeline(allowed_model_ids=(SD35,))
    with pytest.raises(JobError) as info:
        pipe.validate(merged(metadata={"prompt": "a cat", "model-id": SDXL}))
    entry = only_error(info.value)
    assert entry["field"] == "model_id" and entry["value"] == SDXL
    assert entry["source"] == "metadata x-amz-meta-model-id"
    assert entry["allowed"] == SD35
    assert "not enabled in this deployment" in info.value.message


US_SD35 = "us.stability.sd3-5-large-v1:0"
ACCOUNT = "123456789012"


@pytest.mark.parametrize("allowed,model_id", [
    ((SD35,), SD35),
    ((SD35,), "arn:aws:bedrock:us-west-2::foundation-model/stability.sd3-5-large-v1:0"),
    ((US_SD35,), US_SD35),
    ((US_SD35,), f"arn:aws:bedrock:us-west-2:{ACCOUNT}:inference-profile/{US_SD35}"),
    # a geography a configured id uses, for another configured model
    ((SD35, "us.stability.stable-diffusion-xl-v1"), US_SD35),
])
def test_allowed_list_accepts_configured_ids_and_their_arns_in_this_account(allowed, model_id):
    pipe = pipeline(allowed_model_ids=allowed)
    pipe.account_id = ACCOUNT
    job, adapter = pipe.validate(merged(sidecar={"prompt": "a cat", "model_id": model_id}))
    assert adapter.family == "sd3.5" and job.model_id == model_id


@pytest.mark.parametrize("allowed,model_id", [
    ((SD35,), US_SD35),                               # no configured id uses the us. geography
    ((US_SD35,), "eu.stability.sd3-5-large-v1:0"),    # another geography
    ((US_SD35,), f"arn:aws:bedrock:us-west-2:999999999999:inference-profile/{US_SD35}"),  # another account
    ((SD35,), "arn:aws:bedrock:us-west-2:999999999999:foundation-model/stability.sd3-5-large-v1:0"),
    ((SD35,), "arn:aws:bedrock:us-west-2::provisioned-model/abc"),
])
def test_allowed_list_refuses_other_accounts_and_geographies(allowed, model_id):
    pipe = pipeline(allowed_model_ids=allowed)
    pipe.account_id = ACCOUNT
    with pytest.raises(JobError) as info:
        pipe.validate(merged(sidecar={"prompt": "a cat", "model_id": model_id}))
    assert only_error(info.value)["field"] == "model_id"


def test_empty_allowed_list_allows_any_supported_model():
    job, adapter = pipeline().validate(merged(sidecar={"prompt": "a cat", "model_id": SDXL}))
    assert adapter.family == "sdxl"


@pytest.mark.parametrize("model_id", ["amazon.titan-image-generator-v2:0", "stability.stable-image-ultra-v1:1",
                                      "not-a-model", ""])
def test_unsupported_model_id_fails_clearly(model_id):
    with pytest.raises(JobError) as info:
        adapter_for(model_id)
    assert info.value.code in ("invalid_parameters", "model_unavailable")
    assert repr(model_id) in info.value.message
    assert "stability.sd3-5-large-v1:0" in info.value.message
    assert "stability.stable-diffusion-xl-v1" in info.value.message


def test_unsupported_model_id_through_the_pipeline_names_its_source():
    with pytest.raises(JobError) as info:
        pipeline().validate(merged(sidecar={"prompt": "a cat", "model_id": "amazon.nova-canvas-v1:0"}))
    assert "amazon.nova-canvas-v1:0" in info.value.message


# ---- messages are JSON-safe and readable -----------------------------------------------------------

def test_error_details_are_json_serialisable_for_the_record():
    err = error_of(SDXL, metadata={"prompt": "一艘宇宙飞船", "cfg-scale": "50", "steps": "abc"})
    record = json.loads(json.dumps(err.as_record(), ensure_ascii=False))
    assert record["code"] == "invalid_parameters"
    assert {e["field"] for e in record["errors"]} == {"cfg_scale", "steps"}


def test_the_services_us_profiles_lend_no_geography_to_image_to_image_models():
    """A default deployment configures SD3.5 plainly and the services as `us.` profiles: IAM grants no
    `us.` SD3.5 profile, so the worker must refuse it up front (not fail at Bedrock with access denied)."""
    from img2img.operations import default_models

    services = tuple(default_models().values())
    pipe = pipeline(allowed_model_ids=(SD35, *services), operation_models=default_models())
    with pytest.raises(JobError) as info:
        pipe.validate(merged(sidecar={"prompt": "a cat", "model_id": US_SD35}))
    assert only_error(info.value)["field"] == "model_id"
    job, adapter = pipe.validate(merged(sidecar={"prompt": "a cat", "model_id": services[3]}))
    assert job.operation == "inpaint" and adapter.family == "stability-image-services"
