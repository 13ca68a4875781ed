"""Per-model request validation, table-driven from the reference contract (docs/offline-engine.md).

Bedrock rejects a bad body with 400 ValidationException before any image is made; the pipeline must
see the same rejections offline, with a message that names the field and the value it got. The Image
Services' rules come from the project's operations table (img2img.operations), not from copies here.
"""
from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from PIL import Image

from img2img import operations
from img2img.operations import BY_MODEL, MASK, STYLE, Field, ImageRule, Operation

SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"

SDXL_SIZES = ((1024, 1024), (1152, 896), (1216, 832), (1344, 768), (1536, 640),
              (640, 1536), (768, 1344), (832, 1216), (896, 1152))
STYLE_PRESETS = operations.STYLE_PRESETS  # the same 17 for SDXL and the services
SD35_ASPECT_RATIOS = operations.ASPECT_RATIOS
SD35_MAX_PIXELS = 9_437_184
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))


class RequestInvalid(Exception):
    """A body Bedrock would answer with 400 ValidationException; str() is the wire message."""


@dataclass(frozen=True)
class Rule:
    """One JSON field's constraints. `code` is the Stability error code the message should carry."""

    kind: str  # "string" | "number" | "integer" | "array" | "object"
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    code: str | None = None


SDXL_RULES = {
    "text_prompts": Rule("array", required=True, min_length=1),
    "init_image": Rule("string", required=True),
    "init_image_mode": Rule("string", enum=("IMAGE_STRENGTH", "STEP_SCHEDULE")),
    "image_strength": Rule("number", minimum=0, maximum=1),
    "step_schedule_start": Rule("number", minimum=0, maximum=1),
    "step_schedule_end": Rule("number", minimum=0, maximum=1),
    "cfg_scale": Rule("number", minimum=0, maximum=35),
    "clip_guidance_preset": Rule("string", enum=("FAST_BLUE", "FAST_GREEN", "NONE", "SIMPLE", "SLOW",
                                                 "SLOWER", "SLOWEST")),
    "sampler": Rule("string", enum=("DDIM", "DDPM", "K_DPMPP_2M", "K_DPMPP_2S_ANCESTRAL", "K_DPM_2",
                                    "K_DPM_2_ANCESTRAL", "K_EULER", "K_EULER_ANCESTRAL", "K_HEUN", "K_LMS")),
    "samples": Rule("integer", minimum=1, maximum=1, code="invalid_samples"),
    "seed": Rule("integer", minimum=0, maximum=4294967295),
    "steps": Rule("integer", minimum=10, maximum=50),
    "style_preset": Rule("string", enum=STYLE_PRESETS),
    "extras": Rule("object"),
}
SDXL_PROMPT_RULES = {
    "text": Rule("string", required=True, min_length=1, max_length=2000, code="invalid_prompts"),
    "weight": Rule("number"),
}
SD35_RULES = {
    "prompt": Rule("string", required=True, min_length=1, max_length=10000, code="invalid_prompts"),
    "mode": Rule("string", enum=("text-to-image", "image-to-image")),
    "image": Rule("string"),
    "strength": Rule("number", minimum=0, maximum=1),
    "negative_prompt": Rule("string", max_length=10000),
    "seed": Rule("integer", minimum=0, maximum=4294967294),
    "output_format": Rule("string", enum=("png", "jpeg", "webp")),
    "aspect_ratio": Rule("string", enum=SD35_ASPECT_RATIOS),
}
# SD3.5 fields that only one mode accepts: (field, required in image-to-image, allowed in text-to-image).
SD35_MODE_FIELDS = (("image", True, False), ("strength", True, False), ("aspect_ratio", False, True))


@dataclass(frozen=True)
class RenderRequest:
    """A validated body in one vocabulary: `change` 0 keeps the input, 1 ignores it (SD3.5's direction)."""

    model: str
    prompt: str
    negative_prompt: str
    image: Image.Image | None
    change: float
    seed: int
    style_preset: str | None = None
    cfg_scale: float = 7.0
    steps: int = 30
    output_format: str = "png"
    aspect_ratio: str = "1:1"


def _invalid(path: str, problem: str, code: str | None = None) -> RequestInvalid:
    if code:
        return RequestInvalid(f"{code}: #/{path}: {problem}")
    return RequestInvalid(f"Malformed input request: #/{path}: {problem}, please reformat your input and try again.")


def _type_ok(kind: str, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, {"string": str, "number": (int, float), "array": list, "object": dict}[kind])


def check_fields(body: Any, rules: dict[str, Rule], prefix: str = "") -> None:
    """Required keys, no extraneous keys, then each value's type, range, enum and length."""
    where = prefix.rstrip("/") or "#"
    if not isinstance(body, dict):
        raise _invalid(prefix.rstrip("/"), f"expected type: JSONObject, found: {type(body).__name__}")
    for name, rule in rules.items():
        if rule.required and name not in body:
            raise RequestInvalid(f"Malformed input request: {where}: required key [{name}] not found, "
                                 "please reformat your input and try again.")
    for name in body:
        if name not in rules:
            raise RequestInvalid(f"Malformed input request: {where}: extraneous key [{name}] is not permitted, "
                                 "please reformat your input and try again.")
    for name, value in body.items():
        rule, path = rules[name], f"{prefix}{name}"
        if not _type_ok(rule.kind, value):
            raise _invalid(path, f"expected type: {rule.kind}, found: {value!r}", rule.code)
        if rule.kind in ("number", "integer") and not math.isfinite(value):
            raise _invalid(path, f"{value!r} is not a finite number", rule.code)
        if rule.minimum is not None and value < rule.minimum:
            raise _invalid(path, f"{value!r} is not greater or equal to {rule.minimum:g}", rule.code)
        if rule.maximum is not None and value > rule.maximum:
            raise _invalid(path, f"{value!r} is not less or equal to {rule.maximum:g}", rule.code)
        if rule.enum is not None and value not in rule.enum:
            raise _invalid(path, f"{value!r} is not a valid enum value (allowed: {', '.join(rule.enum)})", rule.code)
        if rule.min_length is not None and len(value) < rule.min_length:
            what = "cannot be empty" if rule.min_length == 1 else f"expected minLength: {rule.min_length}"
            raise _invalid(path, f"{what}, actual: {len(value)}", rule.code)
        if rule.max_length is not None and len(value) > rule.max_length:
            raise _invalid(path, f"expected maxLength: {rule.max_length}, actual: {len(value)}", rule.code)


def decode_image(path: str, data: str, max_pixels: int) -> Image.Image:
    """base64 -> an opened (not yet decoded) Pillow image, refusing what Bedrock refuses."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(path, f"is not valid base64 (starts with {data[:16]!r}); send the bare base64 of the "
                             "file, without a data: prefix", "invalid_mime_type") from None
    kind = next((name for magic, name in _MAGIC if raw.startswith(magic)), None)
    if kind is None and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        kind = "webp"
    if kind is None:
        raise _invalid(path, f"unsupported file type (first bytes {raw[:8]!r}); expected image/png, "
                             "image/jpeg or image/webp", "invalid_mime_type")
    try:
        image = Image.open(io.BytesIO(raw), formats=[kind.upper()])
    except Image.DecompressionBombError:
        raise _invalid(path, f"image has too many pixels (max {max_pixels})", "invalid_pixel_count") from None
    except (OSError, SyntaxError) as err:
        raise _invalid(path, f"cannot be read as {kind}: {err}", "invalid_image") from None
    width, height = image.size
    if width * height > max_pixels:
        raise _invalid(path, f"{width}x{height} = {width * height} pixels, more than {max_pixels}",
                       "invalid_pixel_count")
    return image


def validate_sdxl(body: Any) -> RenderRequest:
    check_fields(body, SDXL_RULES)
    for index, item in enumerate(body["text_prompts"]):
        check_fields(item, SDXL_PROMPT_RULES, f"text_prompts/{index}/")
        if not item["text"].strip():
            raise _invalid(f"text_prompts/{index}/text", f"{item['text']!r} is blank", "invalid_prompts")
    image = decode_image("init_image", body["init_image"], max_pixels=1_048_576)
    if image.size not in SDXL_SIZES:
        allowed = ", ".join(f"{w}x{h}" for w, h in SDXL_SIZES)
        raise _invalid("init_image", f"for stable-diffusion-xl-v1 engine, the allowed dimensions are {allowed}, "
                                     f"but we received {image.width}x{image.height}", "invalid_sdxl_v1_dimensions")
    if body.get("init_image_mode") == "STEP_SCHEDULE":
        image_strength = 1.0 - body.get("step_schedule_start", 0.65)
    else:
        image_strength = body.get("image_strength", 0.35)
    weighted = [(p["text"], p.get("weight", 1.0)) for p in body["text_prompts"]]
    return RenderRequest(
        model=SDXL,
        prompt=" ".join(text for text, weight in weighted if weight >= 0),
        negative_prompt=" ".join(text for text, weight in weighted if weight < 0),
        image=image,
        change=1.0 - image_strength,
        seed=int(body.get("seed", 0)),
        style_preset=body.get("style_preset"),
        cfg_scale=float(body.get("cfg_scale", 7.0)),
        steps=int(body.get("steps", 30)),
    )


def validate_sd35(body: Any) -> RenderRequest:
    check_fields(body, SD35_RULES)
    if not body["prompt"].strip():
        raise _invalid("prompt", f"{body['prompt']!r} is blank", "invalid_prompts")
    mode = body.get("mode", "text-to-image")
    for name, required_for_image, allowed_for_text in SD35_MODE_FIELDS:
        if mode == "image-to-image" and required_for_image and name not in body:
            raise RequestInvalid(f"Malformed input request: #: required key [{name}] not found "
                                 "(mode is image-to-image), please reformat your input and try again.")
        if mode == "image-to-image" and not required_for_image and name in body:
            raise _invalid(name, f"{body[name]!r} is not allowed with mode image-to-image")
        if mode == "text-to-image" and not allowed_for_text and name in body:
            raise _invalid(name, f"is not allowed with mode text-to-image (mode was {body.get('mode')!r}; "
                                 "send mode: image-to-image to transform an image)")
    image = None
    if mode == "image-to-image":
        image = decode_image("image", body["image"], max_pixels=SD35_MAX_PIXELS)
        if min(image.size) < 64:
            raise _invalid("image", f"{image.width}x{image.height}: every side must be at least 64 pixels",
                           "invalid_image_dimensions")
    return RenderRequest(
        model=SD35,
        prompt=body["prompt"],
        negative_prompt=body.get("negative_prompt", ""),
        image=image,
        change=float(body.get("strength", 1.0)),
        seed=int(body.get("seed", 0)),
        output_format=body.get("output_format", "png"),
        aspect_ratio=body.get("aspect_ratio", "1:1"),
    )


@dataclass(frozen=True)
class ServiceRequest:
    """A validated Image Services body: every table field set (the body's value or the table's default)."""

    operation: Operation
    values: dict[str, Any]
    image: Image.Image
    mask: Image.Image | None = None
    style_image: Image.Image | None = None

    @property
    def seed(self) -> int:
        return int(self.values.get("seed") or 0)

    @property
    def model(self) -> str:
        return self.operation.model

    @property
    def prompt(self) -> str:
        return self.values.get("prompt") or ""

    @property
    def negative_prompt(self) -> str:
        return self.values.get("negative_prompt") or ""

    @property
    def style_preset(self) -> str | None:
        return self.values.get("style_preset")

    @property
    def output_format(self) -> str:
        return self.values.get("output_format") or "png"


def _field_rule(spec: Field) -> Rule:
    """The table's Field in this module's vocabulary: texts are strings, choices are enums."""
    if spec.kind == "text":
        return Rule("string", required=spec.required, min_length=1 if spec.required else None,
                    max_length=int(spec.maximum) if spec.maximum is not None else None,
                    code="invalid_prompts" if spec.name == "prompt" else None)
    if spec.kind == "choice":
        return Rule("string", required=spec.required, enum=spec.choices)
    return Rule(spec.kind, required=spec.required, minimum=spec.minimum, maximum=spec.maximum)


@cache
def service_rules(operation: Operation) -> dict[str, Rule]:
    """Every key the service's body may hold: its fields, its main image and its companion images."""
    rules = {spec.name: _field_rule(spec) for spec in operation.fields}
    rules[operation.image_field] = Rule("string", required=True)
    for companion in operation.companions:
        rules[companion.body_field] = Rule("string", required=companion.required)
    return rules


def check_image_rule(path: str, image: Image.Image, rule: ImageRule) -> None:
    """The service's size rule: sides, pixel count and aspect ratio, each named in the message."""
    width, height = image.size
    pixels, short, long = width * height, min(width, height), max(width, height)
    if short < rule.min_side:
        raise _invalid(path, f"{width}x{height}: every side must be at least {rule.min_side} pixels",
                       "invalid_image_dimensions")
    if rule.max_side is not None and long > rule.max_side:
        raise _invalid(path, f"{width}x{height}: every side must be at most {rule.max_side} pixels",
                       "invalid_image_dimensions")
    if pixels < rule.min_pixels:
        raise _invalid(path, f"{width}x{height} = {pixels} pixels, fewer than {rule.min_pixels}",
                       "invalid_pixel_count")
    if pixels > rule.max_pixels:
        raise _invalid(path, f"{width}x{height} = {pixels} pixels, more than {rule.max_pixels}",
                       "invalid_pixel_count")
    if long / short > rule.max_aspect:
        raise _invalid(path, f"{width}x{height}: aspect ratio {long / short:.3g}:1 is outside "
                             f"1:{rule.max_aspect:g} to {rule.max_aspect:g}:1", "invalid_aspect_ratio")


def _loaded(path: str, data: str, rule: ImageRule, check_rule: bool = True) -> Image.Image:
    """Decode fully here, so a truncated file is a 400 naming its own field, not a render failure."""
    image = decode_image(path, data, max_pixels=rule.max_pixels)
    if check_rule:
        check_image_rule(path, image, rule)
    try:
        image.load()
    except OSError as err:
        raise _invalid(path, f"cannot be decoded: {err}", "invalid_image") from None
    return image


def validate_service(operation: Operation, body: Any) -> ServiceRequest:
    """Fields, then the "one of these > 0" constraint, then the images (the mask only has to decode)."""
    check_fields(body, service_rules(operation))
    for spec in operation.fields:
        if spec.required and spec.kind == "text" and not body[spec.name].strip():
            raise _invalid(spec.name, f"{body[spec.name]!r} is blank", "invalid_prompts" if spec.name == "prompt"
                           else None)
    if operation.one_of_positive and not any(body.get(name, 0) > 0 for name in operation.one_of_positive):
        names = ", ".join(operation.one_of_positive)
        raise RequestInvalid(f"Malformed input request: #: at least one of [{names}] must be greater than 0, "
                             "please reformat your input and try again.")
    values = {spec.name: body.get(spec.name, spec.default) for spec in operation.fields}
    images = {operation.image_field: _loaded(operation.image_field, body[operation.image_field], operation.rule)}
    for companion in operation.companions:
        if companion.body_field in body:
            images[companion.body_field] = _loaded(companion.body_field, body[companion.body_field],
                                                   operation.rule, check_rule=companion is not MASK)
    return ServiceRequest(operation=operation, values=values, image=images[operation.image_field],
                          mask=images.get(MASK.body_field), style_image=images.get(STYLE.body_field))


def _service_validator(operation: Operation):
    return lambda body: validate_service(operation, body)


VALIDATORS = {SDXL: validate_sdxl, SD35: validate_sd35,
              **{model: _service_validator(operation) for model, operation in BY_MODEL.items()}}
