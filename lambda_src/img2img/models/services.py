"""The thirteen Stability AI Image Services: one adapter, driven by the table in operations.py.

Each service's fields, ranges, defaults and image rule live in that table; this module turns a row into a
pydantic schema (validation with the errors of core/params.py), a request body in the row's field order,
and a size rule (core/fitting.py). The answer has SD3.5's shape.

Prompt weights from SDXL's vocabulary map exactly onto the services' `(text:weight)` syntax. Fields a
service does not take are refused when the job set them (or dropped and listed, with `"strict": false`);
the deployment's own defaults (IMG2IMG_DEFAULT_PARAMS, IMG2IMG_DEFAULT_PROMPT) are written for
image-to-image, so those that do not apply are dropped and listed without failing the job.
"""
from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..core import fitting
from ..core.errors import JobError
from ..core.formats import OUTPUT_FORMATS
from ..core.model_api import GenerationResult, JobParams
from ..core.params import (
    DEPLOYMENT_PREFIX,
    MergedParams,
    collect_errors,
    entry,
    invalid,
    missing_prompt,
    strict_of,
    typed_effective,
)
from ..operations import BY_MODEL, Operation
from ..operations import Field as ServiceField
from .sd35 import parse_sd35_shape

# Our own fields, valid with every service (the body never carries them).
OURS = ("model_id", "operation", "output_format", "fit", "strict", "mask", "style_image", "mask_invert")
OURS_ALLOWED = {
    "fit": "keep (default: downscale only, never cut), crop, pad",
    "output_format": ", ".join(OUTPUT_FORMATS), "mask_invert": "true, false",
    "mask": "an input-bucket key (relative to the image's folder, or /absolute), or alpha",
    "style_image": "an input-bucket key (relative to the image's folder, or /absolute)",
}


def _annotation(spec: ServiceField) -> tuple[Any, Any]:
    """(type, pydantic Field) of one table row."""
    default = ... if spec.required else None
    if spec.kind == "text":
        return (str if spec.required else str | None,
                Field(default=default, min_length=1 if spec.required else 0, max_length=int(spec.maximum or 0)))
    if spec.kind == "choice":
        kind = Literal[spec.choices]  # type: ignore[valid-type]
        return (kind if spec.required else kind | None), Field(default=default)
    number = int if spec.kind == "integer" else float
    return (number if spec.required else number | None), Field(default=default, ge=spec.minimum, le=spec.maximum)


class _Ours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: str
    operation: str
    output_format: Literal[OUTPUT_FORMATS] = "png"  # type: ignore[valid-type]
    fit: Literal[fitting.FITS] = "keep"  # type: ignore[valid-type]
    strict: bool = True
    mask: str | None = Field(default=None, min_length=1, max_length=1024)
    style_image: str | None = Field(default=None, min_length=1, max_length=1024)
    mask_invert: bool = False


@cache
def schema(operation: Operation) -> type[BaseModel]:
    """The pydantic model of one service's job fields (its body fields plus ours)."""
    fields = {spec.name: _annotation(spec) for spec in operation.fields if spec.name != "output_format"}
    return create_model(f"{operation.name.title().replace('-', '')}Fields", __base__=_Ours, **fields)


def allowed(operation: Operation) -> dict[str, str]:
    return {**OURS_ALLOWED, **{spec.name: spec.allowed for spec in operation.fields}}


def _weighted(parts: list[dict[str, Any]]) -> str:
    """Prompt parts as one text, a weight other than ±1 in the services' `(text:weight)` syntax."""
    texts = []
    for part in parts:
        text, weight = str(part["text"]).strip(), abs(float(part["weight"]))
        if text:
            texts.append(text if weight == 1.0 else f"({text}:{weight:g})")
    return ", ".join(texts)


class ServiceAdapter:
    """One Image Service, by its row in operations.py."""

    family = "stability-image-services"

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.image_field = operation.image_field

    def matches(self, base_id: str) -> bool:
        return BY_MODEL.get(base_id) is self.operation

    def validate(self, model_id: str, merged: MergedParams) -> JobParams:
        op = self.operation
        if op.needs_prompt and not merged.has_prompt:
            raise missing_prompt(merged, f"{op.name} needs a prompt: set prompt in metadata, a sidecar or folder "
                                 "defaults")
        takes = {spec.name for spec in op.fields} | set(OURS)
        values: dict[str, Any] = {"model_id": model_id, "operation": op.name}
        inapplicable: list[dict[str, Any]] = []
        for name, value in merged.values.items():
            if name in ("model_id", "operation") or value is None:
                continue
            if name in takes:
                values[name] = value
            else:
                inapplicable.append(entry(name, merged.origin(name), f"does not apply to {op.name}", value=value))
        for name, parts in (("prompt", merged.positive), ("negative_prompt", merged.negative)):
            text = _weighted(parts)
            if not text:
                continue
            if name in takes:
                values[name] = text
            else:
                inapplicable.append(entry(name, merged.origin(name), f"does not apply to {op.name}", value=text))
        errors = self._output_format_errors(merged, values)
        fields, field_errors = collect_errors(schema(op), values, merged, allowed(op))
        errors += field_errors
        if fields is not None:
            errors += self._combination_errors(fields, merged)
        # Deployment defaults are written for image-to-image: what does not apply is dropped, never fatal.
        from_job = [e for e in inapplicable if not e["source"].startswith(DEPLOYMENT_PREFIX)]
        if from_job and strict_of(merged):
            for problem in from_job:
                problem["message"] += f"; remove it, or set \"strict\": false to drop it (fields of {op.name}: " \
                                      f"{', '.join(s.name for s in op.fields)})"
            errors = from_job + errors
        if errors:
            raise invalid(errors)
        # The body's fields in the table's order, output_format (always sent, ours validated it) in its
        # row's place: it used to go last, unlike the documented order (style_preset follows it in five rows).
        request = {spec.name: fields.output_format if spec.name == "output_format" else getattr(fields, spec.name)
                   for spec in op.fields
                   if spec.name == "output_format" or getattr(fields, spec.name) is not None}
        request.setdefault("output_format", fields.output_format)
        return JobParams(model_id=model_id, family=self.family, request=request,
                         effective=typed_effective(merged, fields), sources=dict(merged.origins),
                         output_format=fields.output_format, fit=fields.fit,
                         dropped=[{k: e[k] for k in ("field", "source", "value")} for e in inapplicable],
                         operation=op.name, companions=op.companions, mask_invert=fields.mask_invert,
                         output_scale=op.output_scale, output_pixels=op.output_pixels)

    def _output_format_errors(self, merged: MergedParams, values: dict[str, Any]) -> list[dict[str, Any]]:
        """A transparent result cannot be a JPEG: refused when the job asked; png when only the deployment did."""
        if not self.operation.transparent or values.get("output_format") != "jpeg":
            return []
        if merged.origin("output_format").startswith(DEPLOYMENT_PREFIX):
            values["output_format"] = "png"
            return []
        return [entry("output_format", merged.origin("output_format"),
                      f"{self.operation.name} makes a transparent image and jpeg has no transparency",
                      value="jpeg", allowed="png, webp")]

    def _combination_errors(self, fields: BaseModel, merged: MergedParams) -> list[dict[str, Any]]:
        op, errors = self.operation, []
        if op.one_of_positive and not any(getattr(fields, name) for name in op.one_of_positive):
            names = "/".join(op.one_of_positive)
            errors.append(entry(names, merged.origin(op.one_of_positive[0]),
                                f"{op.name} needs at least one of {names} above 0 (pixels to add on that side)",
                                allowed="0-2000 each, at least one above 0"))
        for name in ("mask", "style_image"):
            if getattr(fields, name) is not None and all(c.name != name for c in op.companions):
                errors.append(entry(name, merged.origin(name), f"{op.name} takes no {name.replace('_', ' ')}",
                                    value=getattr(fields, name)))
        return errors

    def target_size(self, width: int, height: int, fit: str = "keep") -> tuple[int, int]:
        return fitting.fit_size(width, height, self.operation.rule, fit)

    def build_body(self, params: JobParams, image_b64: str,
                   companions: dict[str, str] | None = None) -> dict[str, Any]:
        """The image first, then its companions, then the fields in the table's order."""
        body: dict[str, Any] = {self.image_field: image_b64}
        for companion in self.operation.companions:
            data = (companions or {}).get(companion.body_field)
            if data is None and companion.required:
                raise JobError("missing_parameters", f"{self.operation.name} needs its {companion.name}")
            if data is not None:
                body[companion.body_field] = data
        body.update(params.request)
        return body

    def parse_response(self, payload: dict[str, Any]) -> GenerationResult:
        return parse_sd35_shape(payload, self.operation.title)
