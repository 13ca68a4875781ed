"""Parameter sources, precedence and shape checks (core/params.py)."""
from __future__ import annotations

import json

import pytest

from img2img.core import params as P
from img2img.core.errors import JobError
from img2img.models.sdxl import SDXLAdapter

SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"
ROOT_URI = "s3://in/_defaults.json"
NEAR_URI = "s3://in/a/b/_defaults.json"
SIDECAR_URI = "s3://in/a/b/cat.jpg.json"


def deployment(default_params=None, prompt="", model_id=SD35, output_format="png"):
    return P.deployment_layer(model_id, output_format, prompt, default_params or {})


def all_layers(*, dep=None, root=None, near=None, metadata=None, sidecar=None, request=None, prompt=""):
    layers = [deployment(dep, prompt)]
    if root is not None:
        layers.append(P.folder_defaults_layer(root, ROOT_URI))
    if near is not None:
        layers.append(P.folder_defaults_layer(near, NEAR_URI))
    if metadata is not None:
        layers.extend(P.metadata_layers(metadata)[0])
    if sidecar is not None:
        layers.append(P.sidecar_layer(sidecar, SIDECAR_URI))
    if request is not None:
        layers.append(P.request_layer(request, "api request"))
    return P.merge(layers)


# ---- precedence ---------------------------------------------------------------------------------

FULL = dict(
    dep={"cfg_scale": 1, "steps": 11, "seed": 101, "sampler": "DDIM", "style_preset": "anime", "samples": 1},
    root={"cfg_scale": 2, "steps": 12, "seed": 102, "sampler": "DDPM", "style_preset": "origami"},
    near={"cfg_scale": 3, "steps": 13, "seed": 103, "sampler": "K_LMS"},
    metadata={"params": json.dumps({"cfg_scale": 4, "steps": 14, "seed": 104}), "cfg-scale": "5", "steps": "15"},
    sidecar={"cfg_scale": 6, "steps": 16},
    request={"cfg_scale": 7},
)


def test_each_source_overrides_the_one_before_it_field_by_field():
    merged = all_layers(**FULL)
    assert merged.values["cfg_scale"] == 7            # request
    assert merged.values["steps"] == 16               # sidecar
    assert merged.values["seed"] == 104               # metadata `params`
    assert merged.values["sampler"] == "K_LMS"        # nearest folder defaults
    assert merged.values["style_preset"] == "origami"  # root folder defaults
    assert merged.values["samples"] == 1              # deployment
    assert merged.origin("cfg_scale") == "api request"
    assert merged.origin("steps") == f"sidecar {SIDECAR_URI}"
    assert merged.origin("seed") == "metadata x-amz-meta-params"
    assert merged.origin("sampler") == f"folder defaults {NEAR_URI}"
    assert merged.origin("style_preset") == f"folder defaults {ROOT_URI}"
    assert merged.origin("samples") == "deployment defaults (IMG2IMG_DEFAULT_PARAMS)"
    assert merged.origin("model_id") == "deployment (IMG2IMG_MODEL_ID)"


@pytest.mark.parametrize("drop, expected, origin", [
    ("request", 6, f"sidecar {SIDECAR_URI}"),
    ("sidecar", 7, "api request"),
])
def test_removing_a_source_reveals_the_previous_one(drop, expected, origin):
    layers = dict(FULL)
    layers.pop(drop)
    merged = all_layers(**layers)
    assert merged.values["cfg_scale"] == expected
    assert merged.origin("cfg_scale") == origin


def test_single_metadata_keys_override_the_params_json_whatever_the_dict_order():
    # `params` listed last in the dict still applies first.
    metadata = {"cfg-scale": "5", "params": json.dumps({"cfg_scale": 4, "seed": 9})}
    merged = all_layers(metadata=metadata)
    assert merged.values["cfg_scale"] == "5"
    assert merged.origin("cfg_scale") == "metadata x-amz-meta-cfg-scale"
    assert merged.values["seed"] == 9


def test_nearest_folder_defaults_override_root_and_deployment():
    merged = all_layers(dep={"seed": 1}, root={"seed": 2, "steps": 20}, near={"seed": 3})
    assert (merged.values["seed"], merged.values["steps"]) == (3, 20)
    assert merged.origin("steps") == f"folder defaults {ROOT_URI}"


def test_deployment_default_prompt_is_the_last_resort():
    merged = all_layers(prompt="a watercolor")
    assert merged.positive == [{"text": "a watercolor", "weight": 1.0}]
    assert merged.origin("prompt") == "deployment (IMG2IMG_DEFAULT_PROMPT)"
    merged = all_layers(prompt="a watercolor", metadata={"prompt": "an oil painting"})
    assert merged.positive == [{"text": "an oil painting", "weight": 1.0}]
    assert merged.origin("prompt") == "metadata x-amz-meta-prompt"


def test_deployment_default_params_prompt_beats_default_prompt_variable():
    merged = all_layers(dep={"prompt": "from params"}, prompt="from variable")
    assert merged.positive == [{"text": "from params", "weight": 1.0}]


# ---- prompts ------------------------------------------------------------------------------------

def test_prompt_and_negative_prompt_become_signed_parts():
    merged = all_layers(sidecar={"prompt": "a cat", "negative_prompt": "blurry"})
    assert merged.positive == [{"text": "a cat", "weight": 1.0}]
    assert merged.negative == [{"text": "blurry", "weight": -1.0}]
    assert merged.has_prompt


def test_text_prompts_replace_both_prompt_and_negative_prompt():
    merged = all_layers(root={"prompt": "old", "negative_prompt": "old negative"},
                        sidecar={"text_prompts": [{"text": "new", "weight": 0.8}]})
    assert merged.positive == [{"text": "new", "weight": 0.8}]
    assert merged.negative == []
    assert merged.origin("prompt") == merged.origin("negative_prompt") == f"sidecar {SIDECAR_URI}"


def test_negative_weight_in_text_prompts_is_a_negative_prompt():
    merged = all_layers(sidecar={"text_prompts": [{"text": "a cat"}, {"text": "dogs", "weight": -0.5},
                                                  {"text": "sunlight", "weight": 2}]})
    assert merged.positive == [{"text": "a cat", "weight": 1.0}, {"text": "sunlight", "weight": 2.0}]
    assert merged.negative == [{"text": "dogs", "weight": -0.5}]


def test_later_prompt_replaces_only_the_positive_part():
    merged = all_layers(sidecar={"text_prompts": [{"text": "a", "weight": 1}, {"text": "n", "weight": -1}]},
                        request={"prompt": "b"})
    assert merged.positive == [{"text": "b", "weight": 1.0}]
    assert merged.negative == [{"text": "n", "weight": -1.0}]
    assert merged.origin("prompt") == "api request"
    assert merged.origin("negative_prompt") == f"sidecar {SIDECAR_URI}"


def test_later_text_prompts_replace_an_earlier_negative_prompt():
    merged = all_layers(metadata={"negative-prompt": "grain"},
                        sidecar={"text_prompts": [{"text": "a cat"}]})
    assert merged.negative == []


def test_empty_negative_prompt_clears_an_inherited_one():
    merged = all_layers(root={"negative_prompt": "grain"}, sidecar={"negative_prompt": ""})
    assert merged.negative == []


def test_whitespace_only_prompt_is_not_a_prompt():
    assert not all_layers(metadata={"prompt": "   "}).has_prompt
    assert not all_layers(sidecar={"text_prompts": [{"text": "blurry", "weight": -1}]}).has_prompt


@pytest.mark.parametrize("bad, field", [
    ([], "text_prompts"),
    ("a cat", "text_prompts"),
    ([{"weight": 1}], "text_prompts[0]"),
    ([{"text": "a", "weight": 1, "style": "x"}], "text_prompts[0]"),
    ([{"text": "a"}, {"text": "b", "weight": "heavy"}], "text_prompts[1].weight"),
    ([{"text": "a", "weight": True}], "text_prompts[0].weight"),
])
def test_malformed_text_prompts_name_the_item_and_source(bad, field):
    with pytest.raises(JobError) as info:
        all_layers(sidecar={"text_prompts": bad})
    assert info.value.code == "invalid_parameters"
    # details carry the errors list every parameter error has (it used to be a bare "field" here only)
    [entry] = info.value.details["errors"]
    assert (entry["field"], entry["source"]) == (field, f"sidecar {SIDECAR_URI}")
    assert SIDECAR_URI in info.value.message
    assert field in info.value.message


def test_non_string_prompt_is_rejected_with_its_source():
    with pytest.raises(JobError) as info:
        all_layers(sidecar={"prompt": ["a", "b"]})
    assert info.value.code == "invalid_parameters"
    assert "prompt" in info.value.message and SIDECAR_URI in info.value.message


# ---- image_strength vs strength -------------------------------------------------------------------

def test_strength_replaces_an_inherited_image_strength_and_vice_versa():
    merged = all_layers(root={"image_strength": 0.2}, sidecar={"strength": 0.9})
    assert "image_strength" not in merged.values and merged.values["strength"] == 0.9
    assert "image_strength" not in merged.origins
    merged = all_layers(root={"strength": 0.9}, metadata={"image-strength": "0.4"})
    assert "strength" not in merged.values and merged.values["image_strength"] == "0.4"


def test_strength_from_a_later_source_decides_the_sdxl_image_strength():
    merged = all_layers(root={"image_strength": 0.2}, sidecar={"prompt": "cat", "strength": 0.9})
    job = SDXLAdapter().validate(SDXL, merged)
    assert job.request["image_strength"] == pytest.approx(0.1)


# ---- metadata -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cfg-scale", "cfg_scale", "CFG-Scale", "Cfg_Scale"])
def test_metadata_names_are_case_insensitive_and_dash_underscore_agnostic(name):
    layers, ignored = P.metadata_layers({name: "9"})
    merged = P.merge(layers)
    assert merged.values["cfg_scale"] == "9"
    assert ignored == []
    assert merged.origin("cfg_scale") == f"metadata x-amz-meta-{name.lower()}"


def test_metadata_params_names_are_normalised_too():
    merged = P.merge(P.metadata_layers({"params": '{"Style-Preset": "anime", "CFG_SCALE": 3}'})[0])
    assert merged.values == {"style_preset": "anime", "cfg_scale": 3}


def test_rfc2047_metadata_values_are_decoded():
    merged = all_layers(metadata={"prompt": "=?UTF-8?B?5LiA6ImY5a6H5a6Z6aOe6Ii5?="})
    assert merged.positive == [{"text": "一艘宇宙飞船", "weight": 1.0}]


def test_rfc2047_quoted_printable_and_params_json_are_decoded():
    assert P.decode_metadata_value("=?utf-8?q?caf=C3=A9_au_lait?=") == "café au lait"
    encoded = "=?UTF-8?B?eyJwcm9tcHQiOiAi5LiA6ImY5a6H5a6Z6aOe6Ii5In0=?="  # {"prompt": "一艘宇宙飞船"}
    merged = all_layers(metadata={"params": encoded})
    assert merged.positive[0]["text"] == "一艘宇宙飞船"


def test_plain_metadata_values_pass_through_unchanged():
    for value in ("a cat, 4k", "=? not encoded", "50%"):
        assert P.decode_metadata_value(value) == value


def test_unknown_metadata_keys_are_ignored_and_reported():
    layers, ignored = P.metadata_layers({"author": "me", "Camera-Model": "X100", "prompt": "a cat"})
    merged = P.merge(layers)
    assert ignored == ["author", "camera-model"]
    assert merged.positive[0]["text"] == "a cat"
    assert "author" not in merged.values and "camera_model" not in merged.values


def test_structured_fields_cannot_come_as_single_metadata_keys():
    layers, ignored = P.metadata_layers({"text-prompts": '[{"text": "a"}]', "extras": "{}"})
    assert sorted(ignored) == ["extras", "text-prompts"]
    assert not P.merge(layers).has_prompt


def test_unknown_key_inside_metadata_params_is_rejected():
    with pytest.raises(JobError) as info:
        P.metadata_layers({"params": '{"cfg_scal": 7}'})
    assert info.value.code == "invalid_parameters"
    assert "did you mean 'cfg_scale'" in info.value.message
    assert "metadata x-amz-meta-params" in info.value.message


def test_invalid_json_in_metadata_params_names_the_header_and_position():
    with pytest.raises(JobError) as info:
        P.metadata_layers({"params": '{"cfg_scale": 7,}'})
    assert "metadata x-amz-meta-params" in info.value.message
    assert "line 1 column 17" in info.value.message


# ---- sidecar and folder defaults ------------------------------------------------------------------

@pytest.mark.parametrize("make, where", [
    (lambda d: P.sidecar_layer(d, SIDECAR_URI), f"sidecar {SIDECAR_URI}"),
    (lambda d: P.folder_defaults_layer(d, ROOT_URI), f"folder defaults {ROOT_URI}"),
    (lambda d: P.request_layer(d, "api request"), "api request"),
])
def test_unknown_keys_in_files_are_rejected_with_a_did_you_mean_hint(make, where):
    with pytest.raises(JobError) as info:
        make({"prompt": "a cat", "cfg_scal": 7, "negativ_prompt": "x"})
    err = info.value
    assert err.code == "invalid_parameters"
    assert "did you mean 'cfg_scale'?" in err.message
    assert "did you mean 'negative_prompt'?" in err.message
    assert where in err.message
    assert {e["field"] for e in err.details["errors"]} == {"cfg_scal", "negativ_prompt"}


def test_unknown_key_without_a_near_match_has_no_hint_but_is_rejected():
    with pytest.raises(JobError) as info:
        P.sidecar_layer({"zzzzqqq": 1}, SIDECAR_URI)
    assert "unknown parameter 'zzzzqqq'" in info.value.message
    assert "did you mean" not in info.value.message


def test_unknown_deployment_default_params_are_rejected():
    with pytest.raises(JobError) as info:
        deployment({"cfgscale": 7})
    assert "IMG2IMG_DEFAULT_PARAMS" in info.value.message
    assert "did you mean 'cfg_scale'" in info.value.message


@pytest.mark.parametrize("field", ["init_image", "image"])
def test_an_image_in_a_sidecar_is_rejected_with_a_clear_message(field):
    with pytest.raises(JobError) as info:
        P.sidecar_layer({"prompt": "a cat", field: "iVBORw0KGgo="}, SIDECAR_URI)
    assert info.value.code == "invalid_parameters"
    assert f"unknown parameter {field!r}" in info.value.message
    assert "the image is the uploaded object itself" in info.value.message
    assert "did you mean" not in info.value.message


def test_the_aws_docs_sdxl_body_without_init_image_works_as_a_sidecar():
    raw = json.dumps({
        "text_prompts": [{"text": "A photo of a cat wearing a spacesuit", "weight": 1.0},
                         {"text": "blurry", "weight": -1.0}],
        "init_image_mode": "IMAGE_STRENGTH",
        "image_strength": 0.5,
        "cfg_scale": 10,
        "clip_guidance_preset": "FAST_BLUE",
        "sampler": "K_DPM_2_ANCESTRAL",
        "samples": 1,
        "seed": 452345,
        "steps": 30,
        "style_preset": "photographic",
        "extras": {},
    }, indent=4).encode()
    data = P.parse_json_document(raw, f"sidecar {SIDECAR_URI}")
    merged = P.merge([deployment(model_id=SDXL), P.sidecar_layer(data, SIDECAR_URI)])
    job = SDXLAdapter().validate(SDXL, merged)
    assert job.request == {
        "text_prompts": [{"text": "A photo of a cat wearing a spacesuit", "weight": 1.0},
                         {"text": "blurry", "weight": -1.0}],
        "init_image_mode": "IMAGE_STRENGTH", "image_strength": 0.5, "cfg_scale": 10.0,
        "clip_guidance_preset": "FAST_BLUE", "sampler": "K_DPM_2_ANCESTRAL", "samples": 1,
        "seed": 452345, "steps": 30, "style_preset": "photographic", "extras": {},
    }


@pytest.mark.parametrize("raw, fragment", [
    (b'{"prompt": "a cat",\n  "cfg_scale": 7,\n}', "is not valid JSON: Expecting property name enclosed in "
                                                  "double quotes at line 3 column 1"),
    (b'{"prompt": "a cat" "seed": 1}', "at line 1 column 20"),
    (b"", "is empty; it must hold a JSON object"),
    (b"  \n\t ", "is empty; it must hold a JSON object"),
    (b"\xff\xfe{}", "is not UTF-8 text (byte 0)"),
])
def test_unreadable_sidecars_name_the_file_and_position(raw, fragment):
    with pytest.raises(JobError) as info:
        P.parse_json_document(raw, f"sidecar {SIDECAR_URI}")
    assert info.value.code == "invalid_parameters"
    assert info.value.message.startswith(f"sidecar {SIDECAR_URI} ")
    assert fragment in info.value.message


def test_utf8_bom_sidecar_is_accepted():
    assert P.parse_json_document('\ufeff{"prompt": "é"}'.encode("utf-8"), "sidecar x") == {"prompt": "é"}


def test_oversized_sidecar_is_rejected_with_its_size():
    raw = json.dumps({"prompt": "x" * (P.MAX_SIDECAR_BYTES + 10)}).encode()
    with pytest.raises(JobError) as info:
        P.parse_json_document(raw, f"sidecar {SIDECAR_URI}")
    assert f"{len(raw)} bytes" in info.value.message and SIDECAR_URI in info.value.message


@pytest.mark.parametrize("data, kind", [([{"prompt": "a"}], "list"), ("a cat", "str"), (7, "int"),
                                        (None, "NoneType")])
def test_non_object_sidecar_is_rejected_naming_the_file(data, kind):
    with pytest.raises(JobError) as info:
        P.sidecar_layer(data, SIDECAR_URI)
    assert info.value.code == "invalid_parameters"
    assert f"sidecar {SIDECAR_URI} must be a JSON object, got {kind}" == info.value.message


def test_non_object_folder_defaults_name_the_file():
    with pytest.raises(JobError) as info:
        P.folder_defaults_layer([], NEAR_URI)
    assert f"folder defaults {NEAR_URI}" in info.value.message


# ---- fingerprint --------------------------------------------------------------------------------

def test_fingerprint_is_stable_across_dict_order():
    a = all_layers(sidecar={"prompt": "a cat", "cfg_scale": 7, "seed": 3, "style_preset": "anime"})
    b = all_layers(sidecar={"style_preset": "anime", "seed": 3, "cfg_scale": 7, "prompt": "a cat"})
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 32


def test_fingerprint_is_the_same_whichever_source_gives_the_same_values():
    a = all_layers(sidecar={"prompt": "a cat", "seed": 3})
    b = all_layers(root={"seed": 3}, request={"prompt": "a cat"})
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("change", [
    {"seed": 4}, {"prompt": "a dog"}, {"negative_prompt": "blur"}, {"cfg_scale": 7.5}, {"model_id": SDXL},
    {"output_format": "jpeg"},
])
def test_fingerprint_changes_when_a_value_changes(change):
    base = {"prompt": "a cat", "seed": 3, "cfg_scale": 7}
    a = all_layers(sidecar=base)
    b = all_layers(sidecar={**base, **change})
    assert a.fingerprint() != b.fingerprint()


def test_fingerprint_depends_on_prompt_order_and_weight():
    one = all_layers(sidecar={"text_prompts": [{"text": "a"}, {"text": "b"}]})
    two = all_layers(sidecar={"text_prompts": [{"text": "b"}, {"text": "a"}]})
    three = all_layers(sidecar={"text_prompts": [{"text": "a"}, {"text": "b", "weight": 0.5}]})
    assert len({one.fingerprint(), two.fingerprint(), three.fingerprint()}) == 3


def test_canonical_shows_prompts_as_text_prompts():
    merged = all_layers(sidecar={"prompt": "a cat", "negative_prompt": "blur", "seed": 1})
    canonical = merged.canonical()
    assert canonical["text_prompts"] == [{"text": "a cat", "weight": 1.0}, {"text": "blur", "weight": -1.0}]
    assert canonical["seed"] == 1 and "prompt" not in canonical


def test_one_source_setting_both_strength_directions_is_rejected_not_guessed():
    from img2img.core import params as P
    from img2img.core.errors import JobError

    with pytest.raises(JobError) as info:
        P.sidecar_layer({"prompt": "x", "image_strength": 0.3, "strength": 0.6}, "s3://b/cat.png.json")
    assert info.value.code == "invalid_parameters"
    assert "image_strength and strength" in info.value.message and "set only one" in info.value.message
