"""Stable Diffusion 3.5 Large (`stability.sd3-5-large-v1:0`): the live default.

Jobs written in SDXL's vocabulary still work: prompts, negative weights, image_strength (mapped to
strength = 1 - image_strength), seed and output format have faithful equivalents. Fields without
one are rejected, or dropped and listed in the record when the job says `"strict": false`.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import JobError, transient
from ..core.formats import ALLOWED_TEXT as FORMATS_TEXT
from ..core.formats import OUTPUT_FORMATS
from ..core.images import sniff_format
from ..core.model_api import GenerationResult, JobParams
from ..core.params import MergedParams, collect_errors, invalid, missing_prompt, strict_of, typed_effective
from .sdxl import DEFAULT_IMAGE_STRENGTH, decode_image

TARGET_PIXELS = 1024 * 1024
MAX_ASPECT = 2.5  # between 1:2.5 and 2.5:1, as Stability's image services accept
DEFAULT_STRENGTH = round(1 - DEFAULT_IMAGE_STRENGTH, 6)  # the SDXL default, in SD3.5's direction
# SDXL fields with no SD3.5 equivalent (samples=1 and init_image_mode=IMAGE_STRENGTH are faithful).
NO_EQUIVALENT = ("cfg_scale", "clip_guidance_preset", "sampler", "steps", "style_preset",
                 "step_schedule_start", "step_schedule_end", "extras")

ALLOWED = {
    "prompt": "1-10000 characters", "negative_prompt": "at most 10000 characters",
    "strength": "a number from 0 to 1 (0 = keep the input, 1 = ignore it)",
    "image_strength": "a number from 0 to 1 (SDXL vocabulary: 1 = keep the input)",
    "seed": "an integer from 0 to 4294967294 (0 = random)",
    "output_format": FORMATS_TEXT, "fit": "crop, pad", "mode": "image-to-image",
    "samples": "1", "init_image_mode": "IMAGE_STRENGTH",
}


class SD35Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: str
    prompt: str = Field(min_length=1, max_length=10000)
    negative_prompt: str | None = Field(default=None, max_length=10000)
    strength: float | None = Field(default=None, ge=0, le=1)
    image_strength: float | None = Field(default=None, ge=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=4294967294)
    mode: Literal["image-to-image"] | None = None
    operation: Literal["image-to-image"] | None = None
    samples: int | None = Field(default=None, ge=1, le=1)  # not Literal[1]: that accepts true and 1.0
    init_image_mode: Literal["IMAGE_STRENGTH", "STEP_SCHEDULE"] | None = None
    output_format: Literal[OUTPUT_FORMATS] = "png"  # type: ignore[valid-type]
    fit: Literal["crop", "pad"] = "crop"
    restore_aspect: bool = False
    strict: bool = True


class SD35Adapter:
    family = "sd3.5"
    image_field = "image"

    def matches(self, base_id: str) -> bool:
        return base_id.startswith(("stability.sd3-5-large", "stability.sd3-large"))

    def validate(self, model_id: str, merged: MergedParams) -> JobParams:
        if not merged.has_prompt:
            raise missing_prompt(merged, "no prompt: set prompt in metadata, a sidecar or folder defaults")
        strict = strict_of(merged)
        unmappable = [{"field": name, "source": merged.origin(name), "value": merged.values[name],
                       "message": "has no equivalent on SD3.5 Large"}
                      for name in NO_EQUIVALENT if merged.values.get(name) is not None]
        weights = [p for p in merged.positive + merged.negative if abs(float(p["weight"])) != 1.0]
        if weights:
            unmappable.append({"field": "text_prompts[].weight", "source": merged.origin("prompt"),
                               "value": [p["weight"] for p in weights],
                               "message": "SD3.5 has no prompt weights (only 1 and -1 map exactly)"})
        if merged.values.get("init_image_mode") == "STEP_SCHEDULE":
            unmappable.append({"field": "init_image_mode", "source": merged.origin("init_image_mode"),
                               "value": "STEP_SCHEDULE", "message": "has no equivalent on SD3.5 Large"})
        values = {k: v for k, v in merged.values.items()
                  if k not in NO_EQUIVALENT and not (k == "init_image_mode" and v == "STEP_SCHEDULE")}
        values.update(model_id=model_id,
                      prompt=", ".join(str(p["text"]) for p in merged.positive if str(p["text"]).strip()),
                      negative_prompt=", ".join(str(p["text"]) for p in merged.negative) or None)
        fields, errors = collect_errors(SD35Fields, values, merged, ALLOWED)
        if unmappable and strict:
            for entry in unmappable:
                entry["message"] += ("; remove it, set \"strict\": false to drop it, or choose "
                                     "model_id stability.stable-diffusion-xl-v1")
            errors = unmappable + errors  # all problems at once
        if errors:
            raise invalid(errors)
        dropped = [{k: e[k] for k in ("field", "source", "value")} for e in unmappable]
        strength = fields.strength
        if strength is None and fields.image_strength is not None:
            strength = round(1.0 - fields.image_strength, 6)
        request: dict[str, Any] = {"prompt": fields.prompt}
        if fields.negative_prompt:
            request["negative_prompt"] = fields.negative_prompt
        request["mode"] = "image-to-image"
        request["strength"] = DEFAULT_STRENGTH if strength is None else strength
        if fields.seed is not None:
            request["seed"] = fields.seed
        request["output_format"] = fields.output_format
        return JobParams(model_id=model_id, family=self.family, request=request,
                         effective=typed_effective(merged, fields), sources=dict(merged.origins),
                         output_format=fields.output_format, fit=fields.fit,
                         restore_aspect=fields.restore_aspect, dropped=dropped)

    def target_size(self, width: int, height: int, fit: str = "crop") -> tuple[int, int]:
        """About one megapixel at the input's aspect ratio (clamped to 1:2.5..2.5:1), sides multiples of 64."""
        aspect = min(max(width / height, 1 / MAX_ASPECT), MAX_ASPECT)
        h = math.sqrt(TARGET_PIXELS / aspect)
        w = h * aspect
        return max(64, round(w / 64) * 64), max(64, round(h / 64) * 64)

    def build_body(self, params: JobParams, image_b64: str,
                   companions: dict[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key, value in params.request.items():
            body[key] = value
            if key == "mode":
                body["image"] = image_b64
        return body

    def parse_response(self, payload: dict[str, Any]) -> GenerationResult:
        return parse_sd35_shape(payload, "SD3.5")


def parse_sd35_shape(payload: dict[str, Any], model: str) -> GenerationResult:
    """`{"seeds", "finish_reasons", "images"}`: SD3.5's answer, and every Image Service's."""
    reasons = payload.get("finish_reasons") or [None]
    for reason in reasons:
        if isinstance(reason, str) and reason.startswith("Filter reason"):
            raise JobError("content_filtered", f"Bedrock's content filter blocked this job ({reason}); "
                           "try a different prompt or input image", details={"finish_reason": reason})
        if reason is not None:
            raise transient("model_error", f"{model} finished with {reason!r}")
    images = payload.get("images")
    if not isinstance(images, list) or not images:
        raise transient("model_error", f"{model} answered without images: {str(payload)[:200]}")
    seeds = [int(s) for s in payload.get("seeds") or [0] * len(images)]
    decoded = [decode_image(i) for i in images]
    return GenerationResult(images=decoded, image_format=sniff_format(decoded[0]) or "png", seeds=seeds)
