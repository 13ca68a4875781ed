"""The Image Services' job fields, for each of the 13 operations, generated from the table (operations.py).

Validation goes through Pipeline.validate, as a job's does: the operation picks its model, the adapter
checks every field from every source, and every error names field, source, value and what is allowed.
"""
from __future__ import annotations

import json

import pytest

from img2img.core import params as P
from img2img.core.errors import JobError
from img2img.core.pipeline import Pipeline
from img2img.models.registry import adapter_for
from img2img.operations import BY_NAME, SERVICES, Operation
from img2img.settings import Settings

SD35 = "stability.sd3-5-large-v1:0"
SIDECAR = "s3://in/room.jpg.json"
OPERATIONS = pytest.mark.parametrize("op", SERVICES, ids=[op.name for op in SERVICES])
RANGED = [(op, f) for op in SERVICES for f in op.fields if f.kind in ("number", "integer")]


def pipeline(**settings) -> Pipeline:
    return Pipeline(Settings(output_bucket="out", model_id=SD35, allowed_model_ids=(SD35,), **settings),
                    None, None, registry=adapter_for)


def validate(metadata=None, sidecar=None, deployment=None, output_format="png", defaults=None, request=None,
             **settings):
    layers = [P.deployment_layer(SD35, output_format, "", deployment or {})]
    if defaults is not None:
        layers.append(P.folder_defaults_layer(defaults, "s3://in/_defaults.json"))
    if metadata:
        layers += P.metadata_layers(metadata)[0]
    if sidecar is not None:
        layers.append(P.sidecar_layer(sidecar, SIDECAR))
    if request is not None:
        layers.append(P.request_layer(request, "api request"))
    params, _ = pipeline(**settings).validate(P.merge(layers))
    return params


def refused(*args, **kwargs) -> JobError:
    with pytest.raises(JobError) as caught:
        validate(*args, **kwargs)
    assert not caught.value.retryable
    return caught.value


def one_value(field):
    """A valid value of a table row, typed as JSON would carry it."""
    if field.kind == "text":
        return f"a {field.name.replace('_', ' ')}"
    if field.kind == "choice":
        return field.choices[-1]
    return field.maximum if field.kind == "number" else int(field.maximum)


def number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def every_field(op: Operation) -> dict:
    """Every body field of `op` set to a valid value (output_format included)."""
    return {f.name: one_value(f) for f in op.fields}


def as_metadata(values: dict) -> dict[str, str]:
    """S3 user metadata: strings only, dashes in the names."""
    return {name.replace("_", "-"): value if isinstance(value, str) else json.dumps(value)
            for name, value in values.items()}


@OPERATIONS
@pytest.mark.parametrize("source", ["metadata", "sidecar", "defaults", "request"])
def test_every_field_arrives_typed_from_every_source_in_the_tables_order(op, source):
    values = every_field(op)
    job = {"operation": op.name, **values}
    params = validate(metadata=as_metadata(job)) if source == "metadata" else validate(**{source: job})
    assert all(params.sources[name] != "default" for name in values)
    assert params.operation == op.name and params.model_id == op.default_model_id
    assert list(params.request) == [f.name for f in op.fields]  # the body's order is the table's
    assert params.request == values  # metadata's "0.5" arrives as 0.5, "20" as 20
    assert params.dropped == []


@OPERATIONS
def test_a_job_sets_only_what_it_sets_the_service_keeps_its_own_defaults(op):
    minimal = {f.name: one_value(f) for f in op.fields if f.required}
    if op.one_of_positive:
        minimal[op.one_of_positive[0]] = 1
    params = validate(sidecar={"operation": op.name, **minimal})
    assert params.request == {**minimal, "output_format": "png"}


@OPERATIONS
def test_the_operation_name_is_typed_by_people(op):
    typed = op.name.replace("-", "_").title()  # Remove_Background
    params = validate(metadata={"operation": typed, **as_metadata(_required(op))})
    assert params.operation == op.name


def _required(op: Operation) -> dict:
    values = {f.name: one_value(f) for f in op.fields if f.required}
    if op.one_of_positive:
        values[op.one_of_positive[0]] = 10
    return values


@pytest.mark.parametrize("op", [op for op in SERVICES if op.needs_prompt], ids=lambda op: op.name)
def test_a_missing_prompt_is_missing_parameters(op):
    values = {k: v for k, v in _required(op).items() if k != "prompt"}
    error = refused(sidecar={"operation": op.name, **values})
    assert error.code == "missing_parameters" and op.name in error.message
    assert error.details["errors"][0]["field"] == "prompt"


REQUIRED_NOT_PROMPT = [(op, f) for op in SERVICES for f in op.fields if f.required and f.name != "prompt"]


@pytest.mark.parametrize("op,field", REQUIRED_NOT_PROMPT, ids=[f"{o.name}-{f.name}" for o, f in REQUIRED_NOT_PROMPT])
def test_another_missing_required_field_is_invalid_parameters_naming_it(op, field):
    values = {k: v for k, v in _required(op).items() if k != field.name}
    error = refused(sidecar={"operation": op.name, **values})
    assert error.code == "invalid_parameters"
    [problem] = error.details["errors"]
    assert problem["field"] == field.name and problem["allowed"] == field.allowed
    assert field.name in error.message


@pytest.mark.parametrize("op,field", REQUIRED_NOT_PROMPT, ids=[f"{o.name}-{f.name}" for o, f in REQUIRED_NOT_PROMPT])
def test_an_empty_required_text_is_refused(op, field):
    error = refused(sidecar={"operation": op.name, **_required(op), field.name: ""})
    assert error.details["errors"][0]["field"] == field.name


@pytest.mark.parametrize("op,field", RANGED, ids=[f"{o.name}-{f.name}" for o, f in RANGED])
@pytest.mark.parametrize("side", ["below", "above"])
@pytest.mark.parametrize("source", ["metadata", "sidecar"])
def test_a_value_out_of_range_names_field_source_value_and_range(op, field, side, source):
    step = 1 if field.kind == "integer" else 0.01
    value = round(field.minimum - step if side == "below" else field.maximum + step, 6)
    job = {"operation": op.name, **_required(op), field.name: value}
    if field.name in op.one_of_positive and side == "below":
        job[next(n for n in op.one_of_positive if n != field.name)] = 10
    if source == "metadata":
        where, given = f"metadata x-amz-meta-{field.name.replace('_', '-')}", str(value)
        error = refused(metadata=as_metadata(job))
    else:
        error, where, given = refused(sidecar=job), f"sidecar {SIDECAR}", value
    assert error.code == "invalid_parameters"
    problem = next(e for e in error.details["errors"] if e["field"] == field.name)
    assert problem["source"] == where and problem["value"] == given and problem["allowed"] == field.allowed
    assert f"from {number(field.minimum)} to {number(field.maximum)}" in problem["allowed"]
    assert field.name in error.message and where in error.message


@pytest.mark.parametrize("op,field", RANGED, ids=[f"{o.name}-{f.name}" for o, f in RANGED])
def test_the_range_ends_themselves_are_accepted(op, field):
    for value in (field.minimum, field.maximum):
        job = {"operation": op.name, **_required(op), field.name: int(value) if field.kind == "integer" else value}
        if field.name in op.one_of_positive and not value:
            job[next(n for n in op.one_of_positive if n != field.name)] = 10
        assert validate(sidecar=job).request[field.name] == value


@OPERATIONS
def test_a_choice_outside_its_list_is_refused_with_the_list(op):
    for field in (f for f in op.fields if f.kind == "choice"):
        error = refused(sidecar={"operation": op.name, **_required(op), field.name: "nonsense"})
        problem = next(e for e in error.details["errors"] if e["field"] == field.name)
        assert problem["value"] == "nonsense" and problem["allowed"]
        assert all(choice in problem["allowed"] for choice in field.choices)


def _foreign(op: Operation) -> tuple[str, object]:
    """A service field of another operation that `op` does not take."""
    own = {f.name for f in op.fields}
    for other in SERVICES:
        for field in other.fields:
            if field.name not in own:
                return field.name, one_value(field)
    raise AssertionError(f"{op.name} takes every field")


@OPERATIONS
def test_a_field_of_another_operation_is_refused_in_strict_mode(op):
    name, value = _foreign(op)
    error = refused(sidecar={"operation": op.name, **_required(op), name: value})
    assert error.code == "invalid_parameters"
    problem = next(e for e in error.details["errors"] if e["field"] == name)
    assert problem["source"] == f"sidecar {SIDECAR}" and problem["value"] == value
    assert f"does not apply to {op.name}" in problem["message"] and '"strict": false' in problem["message"]
    assert all(f.name in problem["message"] for f in op.fields)  # what the operation does take


@OPERATIONS
def test_with_strict_false_a_field_of_another_operation_is_dropped_and_listed(op):
    name, value = _foreign(op)
    params = validate(sidecar={"operation": op.name, **_required(op), name: value, "strict": False})
    assert name not in params.request
    assert params.dropped == [{"field": name, "source": f"sidecar {SIDECAR}", "value": value}]


@OPERATIONS
def test_deployment_defaults_that_do_not_apply_are_dropped_without_failing(op):
    deployment = {"cfg_scale": 7, "strength": 0.6, "steps": 30}  # written for image-to-image
    params = validate(sidecar={"operation": op.name, **_required(op)}, deployment=deployment)
    assert not set(deployment) & set(params.request)
    assert {d["field"] for d in params.dropped} == set(deployment)
    assert all(d["source"].startswith(P.DEPLOYMENT_PREFIX) for d in params.dropped)


def test_the_deployment_default_prompt_applies_only_where_the_operation_takes_a_prompt():
    layers = [P.deployment_layer(SD35, "png", "a house style", {}),
              P.sidecar_layer({"operation": "remove-background"}, SIDECAR)]
    params, _ = pipeline().validate(P.merge(layers))
    assert "prompt" not in params.request and params.dropped[0]["field"] == "prompt"


@pytest.mark.parametrize("source", ["metadata", "sidecar"])
def test_remove_background_refuses_jpeg_when_the_job_asks_for_it(source):
    job = {"operation": "remove-background", "output_format": "jpeg"}
    error = refused(metadata=job) if source == "metadata" else refused(sidecar=job)
    problem = error.details["errors"][0]
    assert problem["field"] == "output_format" and problem["value"] == "jpeg"
    assert problem["allowed"] == "png, webp" and "transparent" in problem["message"]


def test_remove_background_makes_png_when_only_the_deployment_says_jpeg():
    params = validate(sidecar={"operation": "remove-background"}, output_format="jpeg")
    assert params.output_format == "png" and params.request == {"output_format": "png"}
    assert validate(sidecar={"operation": "remove-background", "output_format": "webp"},
                    output_format="jpeg").output_format == "webp"


def test_jpeg_is_fine_for_an_operation_without_transparency():
    assert validate(sidecar={"operation": "erase", "output_format": "jpeg"}).request["output_format"] == "jpeg"


def test_outpaint_needs_at_least_one_direction():
    error = refused(sidecar={"operation": "outpaint", "left": 0, "up": 0})
    problem = error.details["errors"][0]
    assert problem["field"] == "left/right/up/down" and "at least one" in problem["message"]
    assert validate(sidecar={"operation": "outpaint", "down": 1}).request["down"] == 1


@pytest.mark.parametrize("weights,text", [
    ([1.0], "a green velvet sofa"),
    ([1.5], "(a green velvet sofa:1.5)"),
    ([0.5, 1.0], "(a green velvet sofa:0.5), a lamp"),
])
def test_weighted_text_prompts_become_the_services_weight_syntax(weights, text):
    parts = [{"text": t, "weight": w} for t, w in zip(["a green velvet sofa", "a lamp"], weights, strict=False)]
    params = validate(sidecar={"operation": "inpaint", "text_prompts": [*parts, {"text": "blurry", "weight": -0.7}]})
    assert params.request["prompt"] == text and params.request["negative_prompt"] == "(blurry:0.7)"


def test_a_model_id_alone_implies_its_operation():
    op = BY_NAME["erase"]
    params = validate(sidecar={"model_id": op.default_model_id})
    assert params.operation == "erase" and params.model_id == op.default_model_id


def test_operation_and_model_id_must_agree():
    error = refused(sidecar={"operation": "inpaint", "prompt": "x", "model_id": BY_NAME["erase"].default_model_id})
    problem = error.details["errors"][0]
    assert problem["field"] == "operation" and "erase" in problem["message"] and "inpaint" in problem["message"]


def test_an_operation_that_is_not_an_operation_lists_them():
    problem = refused(sidecar={"operation": "make-it-pretty"}).details["errors"][0]
    assert problem["field"] == "operation" and "remove-background" in problem["allowed"]


def test_an_operation_the_deployment_does_not_enable_is_refused():
    only_inpaint = {"inpaint": BY_NAME["inpaint"].default_model_id}
    error = refused(sidecar={"operation": "erase"}, operation_models=only_inpaint)
    problem = error.details["errors"][0]
    assert problem["field"] == "operation" and "not enabled" in problem["message"]
    assert problem["allowed"] == "image-to-image, inpaint"
    error = refused(sidecar={"model_id": BY_NAME["erase"].default_model_id}, operation_models=only_inpaint)
    assert "not enabled" in error.details["errors"][0]["message"]
    enabled = validate(sidecar={"operation": "inpaint", "prompt": "x"}, operation_models=only_inpaint)
    assert enabled.operation == "inpaint"


def test_a_deployment_model_for_an_operation_is_the_one_used():
    profile = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.stability.stable-image-erase-object-v1:0"
    params = validate(sidecar={"operation": "erase"}, operation_models={"erase": profile})
    assert params.model_id == profile


@pytest.mark.parametrize("name,value", [("mask", "m.png"), ("style_image", "s.png"), ("mask", "alpha")])
def test_a_companion_the_operation_does_not_take_is_refused(name, value):
    error = refused(sidecar={"operation": "remove-background", name: value})
    assert error.details["errors"][0]["field"] == name


def test_fit_and_mask_invert_are_typed_from_metadata():
    params = validate(metadata={"operation": "erase", "fit": "pad", "mask-invert": "true"})
    assert params.fit == "pad" and params.mask_invert is True
    problem = refused(metadata={"operation": "erase", "fit": "stretch"}).details["errors"][0]
    assert problem["field"] == "fit" and "pad" in problem["allowed"]


def test_service_fields_follow_the_usual_precedence():
    """Folder defaults < metadata < sidecar < request, for a service field as for any other."""
    layers = {"defaults": {"operation": "erase", "grow_mask": 1}, "metadata": {"grow-mask": "2"},
              "sidecar": {"grow_mask": 3}, "request": {"grow_mask": 4}}
    expected = {"defaults": 1, "metadata": 2, "sidecar": 3, "request": 4}
    given: dict = {}
    for name in layers:
        given[name] = layers[name]
        if name != "defaults":
            given["defaults"] = {**layers["defaults"]}
        params = validate(**given)
        assert params.request["grow_mask"] == expected[name]


def test_a_mask_for_an_operation_that_takes_none_is_one_error_alpha_included():
    model = BY_NAME["remove-background"].default_model_id
    for mask in ("alpha", "masks/a.png"):
        merged = P.merge([P.deployment_layer(model, "png", "", {}),
                          P.request_layer({"operation": "remove-background", "mask": mask})])
        with pytest.raises(JobError) as info:
            adapter_for(model).validate(model, merged)
        assert [e["field"] for e in info.value.details["errors"]] == ["mask"]
