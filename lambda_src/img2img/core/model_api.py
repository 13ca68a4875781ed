"""The small interface every Bedrock model adapter implements, and how model ids are read.

An adapter turns validated job parameters plus a prepared image into the model's exact request body,
and the model's answer into images or a typed error. It knows the model's size rules too. The core
holds the interface; models/ implements it and models/registry.py picks the adapter for a model id,
so the core never imports a model and models/ has no import circle.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..operations import IMAGE_TO_IMAGE, Companion

if TYPE_CHECKING:
    from .params import MergedParams


# `us.`, `eu.`, `apac.`, `global.` (and other geography prefixes) mark cross-region inference profiles.
_PROFILE_PREFIX = re.compile(r"^(us|eu|apac|global|us-gov|ca|jp|au)\.")


def split_profile(resource: str) -> tuple[str, str]:
    """`us.stability.x` -> ("us", "stability.x"); a plain foundation-model id -> ("", id)."""
    match = _PROFILE_PREFIX.match(resource)
    return (match.group(1), resource[match.end():]) if match else ("", resource)


def base_model_id(model_id: str) -> str:
    """`arn:...:inference-profile/us.stability.sd3-5-large-v1:0` -> `stability.sd3-5-large-v1:0`."""
    resource = model_id
    if model_id.startswith("arn:"):
        resource = model_id.split("/", 1)[1] if "/" in model_id else ""
    return _PROFILE_PREFIX.sub("", resource)


# InvokeModel refuses request bodies above this many bytes (bedrock-runtime's service model).
MAX_REQUEST_BYTES = 25_000_000
_ARN = re.compile(r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]*:(?P<account>\d{12})?:"
                  r"(?P<type>foundation-model|inference-profile)/(?P<resource>[A-Za-z0-9._:-]+)$")


def parse_model_ref(model_id: str) -> tuple[str | None, str]:
    """(account, resource id) of a model id: `("", id)` for a plain id or a foundation-model ARN,
    `(account, profile id)` for an inference-profile ARN, `(None, model_id)` for a malformed ARN."""
    if not model_id.startswith("arn:"):
        return "", model_id
    match = _ARN.match(model_id)
    if not match:
        return None, model_id
    account = match["account"] or ""
    if (match["type"] == "inference-profile") != bool(account):
        return None, model_id  # profiles belong to an account; foundation models to none
    return account, match["resource"]


@dataclass(frozen=True)
class GenerationResult:
    """What the model returned: encoded images (in `image_format`) and the seeds it used."""

    images: list[bytes]
    image_format: str
    seeds: list[int]


@dataclass
class JobParams:
    """Validated parameters of one job for one model family."""

    model_id: str
    family: str
    request: dict[str, Any]           # the model body without the image, in the model's field order
    effective: dict[str, Any]         # canonical values after precedence (what the record shows)
    sources: dict[str, str]           # field -> where its value came from
    output_format: str = "png"
    fit: str = "crop"
    restore_aspect: bool = False
    dropped: list[dict[str, Any]] = field(default_factory=list)
    operation: str = IMAGE_TO_IMAGE
    # What the job's companion images are (operations.Companion, by name) and how a mask is read.
    companions: tuple[Companion, ...] = ()
    mask_invert: bool = False
    mask_edit_is_white: bool = True  # the polarity the model reads (SDXL's MASK_IMAGE_BLACK: False)
    prompt_language: str = "auto"  # core/translation.py: auto, as-is or the prompts' language
    keep_alpha: bool = False  # send the image with its alpha channel (SDXL's INIT_IMAGE_ALPHA reads it)
    # Output pixels the model answers with, if not the prepared size (upscales): for the pre-call check.
    output_scale: float = 1.0
    output_pixels: int | None = None

    @property
    def seed(self) -> int:
        return int(self.request.get("seed", 0))


class ModelAdapter(Protocol):
    family: str
    image_field: str

    def matches(self, base_id: str) -> bool: ...

    def validate(self, model_id: str, merged: MergedParams) -> JobParams: ...

    def target_size(self, width: int, height: int, fit: str = "crop") -> tuple[int, int]:
        """The size to send for an upright input of this size (may raise `invalid_image`)."""

    def build_body(self, params: JobParams, image_b64: str,
                   companions: dict[str, str] | None = None) -> dict[str, Any]:
        """The exact request body; `companions` are base64 images by body field (`mask`, `style_image`)."""

    def parse_response(self, payload: dict[str, Any]) -> GenerationResult: ...
