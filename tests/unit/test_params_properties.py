"""Parameter handling is total: any user input ends as a valid job or an invalid/missing_parameters
error naming field and source, never another exception, and never a crash later (hashing, records).

The property tests search the whole input space (hypothesis; `ci` profile keeps them small); the
example tests below them pin each defect class found so far with a readable case."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2img.core import params as P
from img2img.core.errors import JobError
from img2img.core.formats import OUTPUT_FORMATS
from img2img.models.sd35 import SD35Adapter
from img2img.models.sdxl import CLIP_PRESETS, SAMPLERS, STYLE_PRESETS, SDXLAdapter

SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"
ADAPTERS = ((SDXL, SDXLAdapter()), (SD35, SD35Adapter()))
SIDECAR_URI = "s3://in/a/cat.jpg.json"
DEFAULTS_URI = "s3://in/a/_defaults.json"
PARAM_CODES = ("invalid_parameters", "missing_parameters")
# The input space is wide: search it more than the profile's default, and more still under `fuzz`.
SEARCH = settings(max_examples=max(150, settings.default.max_examples))


# ---- the oracle: what every outcome must look like ---------------------------------------------------

def check_error(exc: JobError) -> None:
    assert exc.code in PARAM_CODES, exc
    errors = exc.details["errors"]
    assert errors, exc
    for e in errors:
        assert isinstance(e["field"], str) and e["field"], e
        assert isinstance(e["source"], str) and e["source"], e
        assert isinstance(e["message"], str) and e["message"], e
    # the failure record is written like this: it must not choke on anything the user sent
    json.dumps(exc.as_record(), ensure_ascii=False, allow_nan=False).encode("utf-8")


def check_outcome(build) -> list:
    """Build the layers, merge, validate with both adapters; return the valid jobs."""
    try:
        merged = P.merge(build())
    except JobError as exc:
        check_error(exc)
        return []
    merged.fingerprint()  # part of every idempotency key, even of a job that then fails
    json.dumps(merged.canonical(), ensure_ascii=False, allow_nan=False).encode("utf-8")
    jobs = []
    for model_id, adapter in ADAPTERS:
        try:
            job = adapter.validate(model_id, merged)
        except JobError as exc:
            check_error(exc)
            continue
        json.dumps(job.request, allow_nan=False)
        json.dumps({"effective": job.effective, "sources": job.sources, "dropped": job.dropped},
                   ensure_ascii=False, allow_nan=False).encode("utf-8")
        jobs.append(job)
    return jobs


# ---- strategies ---------------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates included
texts = st.one_of(st.text(ANY_CHAR, max_size=12), st.sampled_from(["", " ", "a cat", "\ud800", "x\udfffy",
                                                                   "7", "0.5", "true", "NaN", "=?"]))
numbers = st.one_of(st.integers(), st.integers(min_value=2 ** 62, max_value=2 ** 70), st.just(10 ** 400),
                    st.floats(allow_nan=True, allow_infinity=True))
json_scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)), max_leaves=12)

# Values near the edge of what each field accepts, so the search reaches valid jobs as well.
TYPICAL = {
    "prompt": ["a cat", "", "   ", "\ud800", 5, None, ["a"]],
    "negative_prompt": ["blurry", "", None, 0],
    "text_prompts": [[{"text": "a cat"}], [{"text": "a", "weight": -1}, {"text": "b", "weight": 0.5}], [],
                     [{"text": "a", "weight": "1"}], [{"text": 5}], [{"text": "a", "weight": True}]],
    "cfg_scale": [7, 7.5, 35, 36, "7", True, -0.0],
    "seed": [0, 7, 4294967294, 4294967295, -1, "7", True, 1.5, "1.5", 2 ** 64],
    "steps": [10, 30, 50, "30", 1.0, True],
    "strength": [0, 0.5, 1, "0.5", 2, "0.5e0"], "image_strength": [0.3, "1", -1],
    "samples": [1, True, 1.0, "1", 2],
    "output_format": [*OUTPUT_FORMATS, "gif", "PNG"], "fit": ["crop", "pad", "stretch"],
    "restore_aspect": [True, False, "true", "FALSE", 1], "strict": [True, False, "false", "no", "0", 0],
    "mode": ["image-to-image", "text-to-image"],
    "init_image_mode": ["IMAGE_STRENGTH", "STEP_SCHEDULE"],
    "step_schedule_start": [0.5, "0.4"], "step_schedule_end": [0.1],
    "sampler": ["K_EULER_ANCESTRAL", "DDIM"], "clip_guidance_preset": ["NONE", "FAST_BLUE"],
    "style_preset": ["anime", "vaporwave"], "extras": [{}, {"a": [1, {"b": None}]}],
    "model_id": [SD35, SDXL, "", 5],
}


def spelled(name: str):
    """`name` as users write it: any case, `-` or `_`, stray blanks."""
    def variants(c):
        return ["_", "-"] if c in "_-" else sorted({c.lower(), c.upper()})
    chars = st.tuples(*[st.sampled_from(variants(c)) for c in name]).map("".join)
    return st.tuples(st.sampled_from(["", " "]), chars, st.sampled_from(["", " "])).map("".join)


field_names = st.sampled_from(sorted(TYPICAL))


def field_value(name: str):
    typical = st.sampled_from(TYPICAL[name])
    return st.tuples(spelled(name), st.one_of(typical, typical, typical, json_values))  # mostly typical


field_values = field_names.flatmap(field_value)
# Mostly objects of our fields, often with a prompt (so validation is reached), sometimes anything.
objects = st.one_of(
    st.tuples(st.sampled_from([[], [("prompt", "a cat")], [("Prompt", "a dog")]]),
              st.lists(field_values, max_size=4)).map(lambda t: dict(t[0] + t[1])),
    st.lists(field_values, max_size=3).map(dict),
    st.lists(st.one_of(field_values, st.tuples(texts, json_values)), max_size=3).map(dict),
)
documents = st.one_of(objects, objects, objects, json_values)
layer_documents = st.one_of(st.none(), st.none(), documents)  # a source is often absent

rfc2047 = st.builds(lambda charset, enc, payload: f"=?{charset}?{enc}?{payload}?=",
                    st.sampled_from(["utf-8", "UTF-8", "bogus", "unknown-8bit", "idna", "utf-16", "rot13",
                                     "latin-1", ""]),
                    st.sampled_from("BbQqX"), st.text(st.sampled_from("YQ=5L!_?x0+/"), max_size=8))
metadata_values = st.one_of(texts, rfc2047, st.builds(lambda a, b: a + " " + b, texts, rfc2047),
                            documents.map(lambda d: json.dumps(d)), st.sampled_from(["7", "0.5", "TRUE", "{}"]))  # noqa: PLW0108
metadata_keys = st.one_of(field_names.flatmap(spelled), spelled("params"), spelled("text_prompts"), texts)
metadatas = st.tuples(st.sampled_from([{}, {"prompt": "a cat"}, {"PROMPT": "=?utf-8?q?caf=C3=A9?="}]),
                      st.dictionaries(metadata_keys, metadata_values, max_size=4)).map(lambda t: {**t[0], **t[1]})


def as_text(doc) -> bytes:
    return json.dumps(doc).encode()  # NaN/Infinity come out as the bare words users might write


@SEARCH
@given(model_id=st.sampled_from([SDXL, SD35]), defaults=layer_documents, metadata=st.none() | metadatas,
       sidecar=layer_documents, request=layer_documents, sidecar_as_text=st.booleans())
def test_any_input_is_a_valid_job_or_a_parameter_error_naming_field_and_source(
        model_id, defaults, metadata, sidecar, request, sidecar_as_text):
    def build():
        layers = [P.deployment_layer(model_id, "png", "", {})]
        if defaults is not None:
            layers.append(P.folder_defaults_layer(P.parse_json_document(as_text(defaults), "folder defaults x"),
                                                  DEFAULTS_URI))
        if metadata is not None:
            layers.extend(P.metadata_layers(metadata)[0])
        if sidecar is not None:
            data = P.parse_json_document(as_text(sidecar), "sidecar x") if sidecar_as_text else sidecar
            layers.append(P.sidecar_layer(data, SIDECAR_URI))
        if request is not None:  # already parsed by the API or the event source (NaN included)
            layers.append(P.request_layer(request, "api request"))
        return layers

    check_outcome(build)


@SEARCH
@given(metadata=metadatas)
def test_any_metadata_is_layers_or_a_parameter_error(metadata):
    try:
        layers, ignored = P.metadata_layers(metadata)
    except JobError as exc:
        check_error(exc)
        return
    json.dumps(ignored, ensure_ascii=False).encode("utf-8")  # listed in the record
    check_outcome(lambda: [P.deployment_layer(SD35, "png", "", {}), *layers])


# ---- typed values and their text forms are the same job ------------------------------------------------

prompts = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=40) \
    .filter(lambda s: s.strip() and "=?" not in s)
unit = st.floats(min_value=0, max_value=1)
COMMON = {
    "prompt": prompts, "negative_prompt": prompts, "samples": st.just(1),
    "output_format": st.sampled_from(OUTPUT_FORMATS), "fit": st.sampled_from(["crop", "pad"]),
    "restore_aspect": st.booleans(), "strict": st.booleans(), "mode": st.just("image-to-image"),
}
VALID = {
    SD35: {**COMMON, "seed": st.integers(0, 4294967294), "strength": unit},
    SDXL: {**COMMON, "seed": st.integers(0, 4294967295), "image_strength": unit, "steps": st.integers(10, 50),
           "cfg_scale": st.floats(min_value=0, max_value=35) | st.integers(0, 35),
           "sampler": st.sampled_from(SAMPLERS), "clip_guidance_preset": st.just("NONE"),
           "style_preset": st.sampled_from(STYLE_PRESETS)},
}
assert "NONE" in CLIP_PRESETS


def text_of(value, upper: bool) -> str:
    if isinstance(value, bool):
        return str(value).upper() if upper else str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def valid_jobs(draw):
    model_id = draw(st.sampled_from([SDXL, SD35]))
    fields = VALID[model_id]
    names = draw(st.lists(st.sampled_from(sorted(set(fields) - {"prompt"})), unique=True)) + ["prompt"]
    values = {name: draw(fields[name]) for name in names}
    metadata = {draw(spelled(name).map(str.strip)): text_of(value, draw(st.booleans()))
                for name, value in values.items()}
    return model_id, values, metadata


@given(valid_jobs())
def test_a_valid_job_is_the_same_job_when_its_values_arrive_as_metadata_text(case):
    model_id, values, metadata = case
    adapter = dict(ADAPTERS)[model_id]
    base = P.deployment_layer(model_id, "png", "", {})
    typed = adapter.validate(model_id, P.merge([base, P.sidecar_layer(values, SIDECAR_URI)]))
    text = adapter.validate(model_id, P.merge([base, *P.metadata_layers(metadata)[0]]))
    assert text.request == typed.request
    assert text.effective == typed.effective
    assert (text.output_format, text.fit, text.restore_aspect) == (typed.output_format, typed.fit,
                                                                   typed.restore_aspect)


# ---- the defect classes, one readable case each ---------------------------------------------------------

def error_of(fn, *args) -> dict:
    """The single error entry of a parameter error raised by fn(*args)."""
    with pytest.raises(JobError) as info:
        fn(*args)
    check_error(info.value)
    assert len(info.value.details["errors"]) == 1, info.value.details
    return info.value.details["errors"][0]


def sidecar(doc: bytes):
    return P.sidecar_layer(P.parse_json_document(doc, f"sidecar {SIDECAR_URI}"), SIDECAR_URI)


def sdxl(**sidecar_values):
    merged = P.merge([P.deployment_layer(SDXL, "png", "", {}), P.sidecar_layer(sidecar_values, SIDECAR_URI)])
    return SDXLAdapter().validate(SDXL, merged)


@pytest.mark.parametrize("values, field", [
    ({"prompt": 5}, "prompt"),
    ({"text_prompts": []}, "text_prompts"),
    ({"text_prompts": [{"text": "a", "weight": "1"}]}, "text_prompts[0].weight"),
    ({"text_prompts": [{"text": 5}]}, "text_prompts[0].text"),
])
def test_malformed_prompts_are_refused_when_a_layer_is_built_so_merge_never_raises(values, field):
    # Even a layer built by hand: merge (called before the pipeline records failures) cannot see it.
    e = error_of(P.Layer, P.SIDECAR, values, dict.fromkeys(values, f"sidecar {SIDECAR_URI}"))
    assert (e["field"], e["source"]) == (field, f"sidecar {SIDECAR_URI}")


@pytest.mark.parametrize("build, field, source", [
    (lambda: sidecar(b'{"prompt": "a \\ud800 cat"}'), "prompt", f"sidecar {SIDECAR_URI}"),
    (lambda: sidecar(b'{"extras": {"k": ["\\udfff"]}}'), "extras.k[0]", f"sidecar {SIDECAR_URI}"),
    (lambda: sidecar(b'{"extras": {"\\ud800": 1}}'), "extras.\\ud800", f"sidecar {SIDECAR_URI}"),
    (lambda: P.request_layer({"negative_prompt": "\ud83d"}, "api request"), "negative_prompt", "api request"),
    (lambda: P.metadata_layers({"prompt": "\udc80"}), "prompt", "metadata x-amz-meta-prompt"),
    (lambda: P.metadata_layers({"params": '{"prompt": "\\ud800"}'}), "prompt", "metadata x-amz-meta-params"),
])
def test_text_that_is_not_unicode_is_refused_naming_field_and_source(build, field, source):
    e = error_of(build)
    assert (e["field"], e["source"]) == (field, source)
    assert "lone surrogate" in e["message"] and "value" not in e


def test_a_proper_surrogate_pair_escape_is_just_a_character():
    layer = sidecar(b'{"prompt": "a \\ud83d\\ude00 cat"}')
    assert P.merge([layer]).positive[0]["text"] == "a \U0001F600 cat"


@pytest.mark.parametrize("build, field", [
    (lambda: sidecar(b'{"prompt": "a", "cfg_scale": NaN}'), "cfg_scale"),
    (lambda: sidecar(b'{"prompt": "a", "strength": -Infinity}'), "strength"),
    (lambda: sidecar(b'{"prompt": "a", "cfg_scale": 1e999}'), "cfg_scale"),
    (lambda: sidecar(b'{"text_prompts": [{"text": "a", "weight": Infinity}]}'), "text_prompts[0].weight"),
    (lambda: P.request_layer({"extras": {"x": float("nan")}}, "api request"), "extras.x"),
])
def test_non_finite_numbers_are_refused_naming_the_field(build, field):
    e = error_of(build)
    assert e["field"] == field and "not a finite number" in e["message"]


def test_absurd_nesting_is_refused_without_recursion_errors():
    assert "nested more than 20" in error_of(sidecar, b'{"extras": ' + b"[" * 25 + b"]" * 25 + b"}")["message"]
    assert "nested far too deeply" in error_of(sidecar, b'{"extras": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")[
        "message"]
    deep: dict = {}
    for _ in range(5000):  # already parsed (an API dict): the check is iterative
        deep = {"a": deep}
    assert error_of(P.request_layer, {"extras": deep}, "api request")["field"].startswith("extras.a.a")


@pytest.mark.parametrize("value", ["=?UTF-8?B?5L?=", "=?utf-8?b?Y?=", "=?bogus?q?x?=", "=?rot13?q?abc?=",
                                   "=?idna?q?xn--?=", "=?utf-8?q?=FF?=", "=?unknown-8bit?q?=FF=FE?="])
def test_a_malformed_rfc2047_value_is_an_invalid_parameter_never_a_header_parse_error(value):
    e = error_of(P.metadata_layers, {"Prompt": value})
    assert (e["field"], e["source"]) == ("prompt", "metadata x-amz-meta-prompt")


@pytest.mark.parametrize("values, field", [
    ({"seed": True}, "seed"), ({"steps": True}, "steps"), ({"samples": True}, "samples"),
    ({"samples": 1.0}, "samples"), ({"seed": 1.5}, "seed"), ({"steps": 30.0}, "steps"),
    ({"restore_aspect": 1}, "restore_aspect"), ({"restore_aspect": "yes"}, "restore_aspect"),
    ({"cfg_scale": True}, "cfg_scale"), ({"cfg_scale": "7,5"}, "cfg_scale"), ({"seed": "1_000"}, "seed"),
    ({"seed": "\u0667"}, "seed"), ({"cfg_scale": "nan"}, "cfg_scale"), ({"cfg_scale": "inf"}, "cfg_scale"),
])
def test_json_types_are_not_stretched(values, field):
    e = error_of(lambda: sdxl(prompt="a cat", **values))
    assert e["field"] == field and e["source"] == f"sidecar {SIDECAR_URI}"


@pytest.mark.parametrize("text, value", [("7", 7), (" 7 ", 7), ("+7", 7), ("0.5", 0.5), (".5", 0.5),
                                         ("5e-1", 0.5), ("TRUE", True), ("False", False)])
def test_the_one_text_rule(text, value):
    kind = type(value)
    assert P.parse_text(kind, text) == value and type(P.parse_text(kind, text)) is kind


@pytest.mark.parametrize("text", ["no", "0", "1", "yes", "off", ""])
def test_sd35_strict_follows_the_one_boolean_rule(text):
    merged = P.merge([P.deployment_layer(SD35, "png", "", {}),
                      *P.metadata_layers({"prompt": "a cat", "strict": text, "steps": "20"})[0]])
    with pytest.raises(JobError) as info:
        SD35Adapter().validate(SD35, merged)
    fields = {e["field"] for e in info.value.details["errors"]}
    assert {"strict", "steps"} <= fields  # not silently relaxed: strict is wrong and steps still refused


def test_numeric_text_from_a_sidecar_follows_the_same_rule_as_metadata():
    assert sdxl(prompt="a cat", seed="7", cfg_scale="7.5", restore_aspect="true").request["seed"] == 7


@pytest.mark.parametrize("build, fragment", [
    (lambda: P.request_layer({"seed": 2 ** 70}, "api request"), "bits"),
    (lambda: sidecar(b'{"seed": ' + b"1" * 5000 + b"}"), "not usable JSON"),
    (lambda: sidecar(b'{"seed": 1, "seed": 2}'), "twice"),
    (lambda: P.sidecar_layer({"seed": 1, "SEED": 2}, SIDECAR_URI), "twice"),
    (lambda: P.metadata_layers({"cfg-scale": "1", "cfg_scale": "2"}), "twice"),
    (lambda: P.request_layer({"model_id": 5}, "api request"), "model id"),
    (lambda: P.request_layer({"model_id": ""}, "api request"), "model id"),
    (lambda: P.request_layer({"extras": {"a": {1, 2}}}, "api request"), "not a JSON value"),
    (lambda: P.request_layer({"extras": {1: "a"}}, "api request"), "not a string"),
])
def test_other_inputs_no_later_step_could_handle(build, fragment):
    assert fragment in error_of(build)["message"]


def test_missing_prompt_errors_name_the_field_too():
    merged = P.merge([P.deployment_layer(SD35, "png", "", {}), *P.metadata_layers({"prompt": "  "})[0]])
    with pytest.raises(JobError) as info:
        SD35Adapter().validate(SD35, merged)
    assert info.value.code == "missing_parameters"
    assert info.value.details["errors"][0]["source"] == "metadata x-amz-meta-prompt"
