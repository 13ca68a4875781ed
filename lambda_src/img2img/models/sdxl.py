"""SDXL 1.0 (`stability.stable-diffusion-xl-v1`): the seed's contract, every field exactly.

End of life on Bedrock since 2025-05-20 (calls answer ResourceNotFoundException), still supported
here for accounts and offline engines that serve it, and because its vocabulary is what users know.
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import JobError, transient
from ..core.formats import ALLOWED_TEXT as FORMATS_TEXT
from ..core.formats import OUTPUT_FORMATS
from ..core.model_api import GenerationResult, JobParams
from ..core.params import MergedParams, collect_errors, invalid, missing_prompt, typed_effective
from ..operations import Companion

SIZES = ((1024, 1024), (1152, 896), (1216, 832), (1344, 768), (1536, 640),
         (640, 1536), (768, 1344), (832, 1216), (896, 1152))
STYLE_PRESETS = ("3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance",
                 "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk",
                 "origami", "photographic", "pixel-art", "tile-texture")
SAMPLERS = ("DDIM", "DDPM", "K_DPMPP_2M", "K_DPMPP_2S_ANCESTRAL", "K_DPM_2", "K_DPM_2_ANCESTRAL",
            "K_EULER", "K_EULER_ANCESTRAL", "K_HEUN", "K_LMS")
CLIP_PRESETS = ("FAST_BLUE", "FAST_GREEN", "NONE", "SIMPLE", "SLOW", "SLOWER", "SLOWEST")
DEFAULT_IMAGE_STRENGTH = 0.35
# Image to image with a mask (the Bedrock page "Stability.ai Diffusion 1.0 image to image (masking)"):
# which pixels are replaced. WHITE/BLACK read `mask_image` (same size as init_image); ALPHA reads the
# init image's own alpha channel (fully transparent = replaced) and takes no mask_image.
MASK_SOURCES = ("MASK_IMAGE_WHITE", "MASK_IMAGE_BLACK", "INIT_IMAGE_ALPHA")
MASK_IMAGE = Companion("mask", "mask", "mask_image", required=True, is_mask=True)
# Fields of plain image-to-image that the masking request does not have.
NOT_WITH_MASK = ("init_image_mode", "image_strength", "strength", "step_schedule_start", "step_schedule_end")

ALLOWED = {
    "text_prompts": "1 or more prompts, each text 1-2000 characters, weight a number (negative = negative prompt)",
    "cfg_scale": "a number from 0 to 35",
    "clip_guidance_preset": ", ".join(CLIP_PRESETS),
    "init_image_mode": "IMAGE_STRENGTH, STEP_SCHEDULE",
    "image_strength": "a number from 0 to 1 (1 = keep the input)",
    "strength": "a number from 0 to 1 (SD3.5 vocabulary: 0 = keep the input)",
    "step_schedule_start": "a number from 0 to 1", "step_schedule_end": "a number from 0 to 1",
    "sampler": ", ".join(SAMPLERS),
    "samples": "1 (Bedrock generates one image per request)",
    "seed": "an integer from 0 to 4294967295 (0 = random)",
    "steps": "an integer from 10 to 50",
    "style_preset": ", ".join(STYLE_PRESETS),
    "output_format": FORMATS_TEXT, "fit": "crop, pad", "mode": "image-to-image",
    "mask_source": ", ".join(MASK_SOURCES), "mask_invert": "true, false",
    "mask": "an input-bucket key (relative to the image's folder, or /absolute)",
}

_Unit = Field(default=None, ge=0, le=1)


class TextPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000)
    weight: float = 1.0


class SDXLFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_id: str
    text_prompts: list[TextPrompt] = Field(min_length=1)
    cfg_scale: float | None = Field(default=None, ge=0, le=35)
    clip_guidance_preset: Literal[CLIP_PRESETS] | None = None  # type: ignore[valid-type]
    init_image_mode: Literal["IMAGE_STRENGTH", "STEP_SCHEDULE"] | None = None
    image_strength: float | None = _Unit
    strength: float | None = _Unit
    step_schedule_start: float | None = _Unit
    step_schedule_end: float | None = _Unit
    sampler: Literal[SAMPLERS] | None = None  # type: ignore[valid-type]
    samples: int | None = Field(default=None, ge=1, le=1)  # not Literal[1]: that accepts true and 1.0
    seed: int | None = Field(default=None, ge=0, le=4294967295)
    steps: int | None = Field(default=None, ge=10, le=50)
    style_preset: Literal[STYLE_PRESETS] | None = None  # type: ignore[valid-type]
    extras: dict[str, Any] | None = None
    mode: Literal["image-to-image"] | None = None
    operation: Literal["image-to-image"] | None = None
    mask_source: Literal[MASK_SOURCES] | None = None  # type: ignore[valid-type]
    mask: str | None = Field(default=None, min_length=1, max_length=1024)
    mask_invert: bool = False
    output_format: Literal[OUTPUT_FORMATS] = "png"  # type: ignore[valid-type]
    fit: Literal["crop", "pad"] = "crop"
    restore_aspect: bool = False
    strict: bool = True


class SDXLAdapter:
    family = "sdxl"
    image_field = "init_image"

    def matches(self, base_id: str) -> bool:
        return base_id.startswith("stability.stable-diffusion-xl")

    def validate(self, model_id: str, merged: MergedParams) -> JobParams:
        if not merged.has_prompt:
            raise missing_prompt(merged, "no positive prompt: set prompt (metadata, sidecar or folder "
                                 "defaults) or a text_prompts item with a positive weight")
        values = {**merged.values, "model_id": model_id, "text_prompts": merged.positive + merged.negative}
        # Field errors and combination errors are reported together: one round trip fixes the job.
        fields, errors = collect_errors(SDXLFields, values, merged, ALLOWED)
        errors += self._combination_errors(merged)
        if errors:
            raise invalid(errors)
        masking = fields.mask_source is not None
        image_strength = fields.image_strength
        if fields.strength is not None:  # the SD3.5 vocabulary, mapped exactly
            image_strength = round(1.0 - fields.strength, 6)
        mode = fields.init_image_mode or "IMAGE_STRENGTH"
        if image_strength is None and mode == "IMAGE_STRENGTH" and not masking:
            image_strength = DEFAULT_IMAGE_STRENGTH
        request: dict[str, Any] = {"text_prompts": [p.model_dump() for p in fields.text_prompts]}
        optional = {
            "mask_source": fields.mask_source,
            "init_image_mode": fields.init_image_mode,
            "image_strength": image_strength if mode == "IMAGE_STRENGTH" else None,
            "step_schedule_start": fields.step_schedule_start,
            "step_schedule_end": fields.step_schedule_end,
            "cfg_scale": fields.cfg_scale,
            "clip_guidance_preset": fields.clip_guidance_preset,
            "sampler": fields.sampler,
            "samples": fields.samples,
            "seed": fields.seed,
            "steps": fields.steps,
            "style_preset": fields.style_preset,
            "extras": fields.extras,
        }
        request.update({k: v for k, v in optional.items() if v is not None})
        reads_mask = fields.mask_source in ("MASK_IMAGE_WHITE", "MASK_IMAGE_BLACK")
        return JobParams(model_id=model_id, family=self.family, request=request,
                         effective=typed_effective(merged, fields), sources=dict(merged.origins),
                         output_format=fields.output_format, fit=fields.fit,
                         restore_aspect=fields.restore_aspect, companions=(MASK_IMAGE,) if reads_mask else (),
                         mask_invert=fields.mask_invert, keep_alpha=fields.mask_source == "INIT_IMAGE_ALPHA",
                         mask_edit_is_white=fields.mask_source != "MASK_IMAGE_BLACK")

    @staticmethod
    def _combination_errors(merged: MergedParams) -> list[dict[str, Any]]:
        """Rules across fields, judged on the merged values (so they show up beside field errors)."""
        v, errors = merged.values, []
        mode = v.get("init_image_mode")
        for name in ("step_schedule_start", "step_schedule_end"):
            if v.get(name) is not None and mode != "STEP_SCHEDULE":
                errors.append({"field": name, "source": merged.origin(name),
                               "message": "only applies with init_image_mode=STEP_SCHEDULE"})
        if mode == "STEP_SCHEDULE":
            for name in ("image_strength", "strength"):
                if v.get(name) is not None:
                    errors.append({"field": name, "source": merged.origin(name),
                                   "message": "does not apply with init_image_mode=STEP_SCHEDULE "
                                              "(use step_schedule_start = 1 - image_strength)"})
        masking = v.get("mask_source")
        if masking:
            for name in NOT_WITH_MASK:
                if v.get(name) is not None:
                    errors.append({"field": name, "source": merged.origin(name),
                                   "message": f"does not apply with mask_source={masking} (the masking request "
                                              "replaces the masked pixels and keeps the others)"})
        if v.get("mask") is not None and masking not in ("MASK_IMAGE_WHITE", "MASK_IMAGE_BLACK"):
            errors.append({"field": "mask", "source": merged.origin("mask"), "value": v.get("mask"),
                           "message": "a mask image applies only with mask_source MASK_IMAGE_WHITE or "
                                      "MASK_IMAGE_BLACK", "allowed": "set mask_source too"})
        clip, sampler = v.get("clip_guidance_preset"), v.get("sampler")
        if clip not in (None, "NONE") and isinstance(sampler, str) and "ANCESTRAL" not in sampler:
            errors.append({"field": "sampler", "source": merged.origin("sampler"), "value": sampler,
                           "message": f"CLIP guidance ({clip}) needs an ancestral sampler",
                           "allowed": "K_DPM_2_ANCESTRAL, K_DPMPP_2S_ANCESTRAL, K_EULER_ANCESTRAL"})
        return errors

    def target_size(self, width: int, height: int, fit: str = "crop") -> tuple[int, int]:
        """The allowed size whose aspect ratio is nearest to the input's (compared on a log scale)."""
        aspect = math.log(width / height)
        return min(SIZES, key=lambda s: abs(math.log(s[0] / s[1]) - aspect))

    def build_body(self, params: JobParams, image_b64: str,
                   companions: dict[str, str] | None = None) -> dict[str, Any]:
        """The page's field order: text_prompts, init_image, (mask_source, mask_image,) then the rest."""
        body = {"text_prompts": params.request["text_prompts"], "init_image": image_b64}
        rest = {k: v for k, v in params.request.items() if k != "text_prompts"}
        if "mask_source" in rest:
            body["mask_source"] = rest.pop("mask_source")
            mask = (companions or {}).get(MASK_IMAGE.body_field)
            if mask is not None:
                body[MASK_IMAGE.body_field] = mask
        body.update(rest)
        return body

    def parse_response(self, payload: dict[str, Any]) -> GenerationResult:
        artifacts = payload.get("artifacts")
        if not isinstance(artifacts, list) or not artifacts:
            raise transient("model_error", f"SDXL answered without artifacts: {str(payload)[:200]}")
        images, seeds = [], []
        for artifact in artifacts:
            reason = artifact.get("finishReason")
            if reason == "CONTENT_FILTERED":
                raise JobError("content_filtered", "Bedrock's content filter blocked the generated image "
                               "(finishReason CONTENT_FILTERED); try a different prompt or input image",
                               details={"finish_reason": reason})
            if reason != "SUCCESS":
                raise transient("model_error", f"SDXL finished with {reason!r}")
            images.append(decode_image(artifact.get("base64")))
            seeds.append(int(artifact.get("seed", 0)))
        return GenerationResult(images=images, image_format="png", seeds=seeds)


def decode_image(data: Any) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise transient("model_error", "the model returned an image that is not valid base64") from None
