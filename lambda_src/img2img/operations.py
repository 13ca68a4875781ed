"""Every operation a job may ask for: its Bedrock model, its fields (ranges, defaults), its image rule.

The one home of these facts (../shared/reference/stability-image-services.md, late 2026). The model
adapter (models/services.py), the parameter parser, the offline engine, the CDK config, the API schema
and docs/operations.md all read this table, so a corrected range is a one-line change here. Plain data,
no imports beyond the standard library: infra and the cold start read it.

`image-to-image` is today's prompt-guided generation (SDXL 1.0 or SD3.5 Large, by model id); its fields
belong to those two adapters (models/sdxl.py, models/sd35.py). The thirteen others are the Stability
Image Services, called through `us.` cross-region inference profiles.
"""
from __future__ import annotations

from dataclasses import dataclass

IMAGE_TO_IMAGE = "image-to-image"
PROFILE_GEOGRAPHY = "us"  # the Image Services are offered through `us.` inference profiles only
# The regions a `us.` profile routes to: IAM needs the foundation-model ARN in each.
PROFILE_REGIONS = ("us-east-1", "us-east-2", "us-west-2")

STYLE_PRESETS = ("3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance",
                 "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk",
                 "origami", "photographic", "pixel-art", "tile-texture")
ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
SERVICE_OUTPUT_FORMATS = ("jpeg", "png", "webp")

# IPTC digital source types (issue 12 marks outputs with them).
GENERATED = "trainedAlgorithmicMedia"
EDITED = "compositeWithTrainedAlgorithmicMedia"


@dataclass(frozen=True)
class Field:
    """One body field of a service. `kind` is "text", "number", "integer" or "choice"."""

    name: str
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    default: object = None          # the service's own default (documented; we send only what the job set)
    choices: tuple[str, ...] = ()
    required: bool = False

    @property
    def allowed(self) -> str:
        """What an error says is allowed."""
        if self.kind == "choice":
            return ", ".join(self.choices)
        if self.kind == "text":
            return f"at most {int(self.maximum or 0):,} characters" + ("" if not self.required else ", not empty")
        number = "an integer" if self.kind == "integer" else "a number"
        default = f"; default {self.default}" if self.default is not None else ""
        return f"{number} from {_num(self.minimum)} to {_num(self.maximum)}{default}"


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class ImageRule:
    """What the service accepts as an input image (after our fitting)."""

    min_side: int = 64
    max_side: int | None = None
    min_pixels: int = 4_096
    max_pixels: int = 9_437_184
    max_aspect: float = 2.5         # long side / short side

    @property
    def text(self) -> str:
        sides = f"every side {self.min_side:,}" + (f"-{self.max_side:,}" if self.max_side else "+") + " px"
        return (f"{sides}, {self.min_pixels:,}-{self.max_pixels:,} pixels in all, aspect ratio between "
                f"1:{self.max_aspect:g} and {self.max_aspect:g}:1")


@dataclass(frozen=True)
class Companion:
    """A second image a service takes: found next to the job's image, or named by the job."""

    name: str            # the job field that names it explicitly (`mask`, `style_image`)
    suffix: str          # `room.jpg.mask.png`, `room.mask.png`
    body_field: str      # its field in the request body
    required: bool       # a job cannot run without it (a mask falls back to the image's alpha)
    is_mask: bool = False  # read as a grey mask (white = edit), not as a picture
    alpha_fallback: bool = False


MASK = Companion("mask", "mask", "mask", required=False, is_mask=True, alpha_fallback=True)
STYLE = Companion("style_image", "style", "style_image", required=True)

# Fields most services share, with the same range everywhere.
PROMPT = Field("prompt", "text", maximum=10_000, required=True)
OPTIONAL_PROMPT = Field("prompt", "text", maximum=10_000)
NEGATIVE = Field("negative_prompt", "text", maximum=10_000)
SEED = Field("seed", "integer", 0, 4_294_967_294, default=0)
OUTPUT = Field("output_format", "choice", choices=SERVICE_OUTPUT_FORMATS, default="png")
STYLE_PRESET = Field("style_preset", "choice", choices=STYLE_PRESETS)
GROW_MASK = Field("grow_mask", "integer", 0, 20, default=5)
CONTROL_STRENGTH = Field("control_strength", "number", 0.0, 1.0, default=0.7)
STANDARD = ImageRule()


def _direction(name: str) -> Field:
    return Field(name, "integer", 0, 2000, default=0)


@dataclass(frozen=True)
class Operation:
    name: str                       # what users type: `remove-background`
    model: str                      # the foundation-model id (the default model id adds `us.`)
    title: str
    fields: tuple[Field, ...]       # body fields besides the images, in the body's order
    image_field: str = "image"
    rule: ImageRule = STANDARD
    companions: tuple[Companion, ...] = ()
    source_type: str = EDITED       # IPTC: an edit that keeps the photo, or a new generation
    transparent: bool = False       # the output has an alpha channel worth keeping (png/webp only)
    # Approximate output size, for the pre-call output check: a scale of each side of the input, or a
    # fixed pixel count. Upscales answer far above their input.
    output_scale: float = 1.0
    output_pixels: int | None = None
    # At least one of these fields must be > 0 (outpaint's directions).
    one_of_positive: tuple[str, ...] = ()

    @property
    def default_model_id(self) -> str:
        return f"{PROFILE_GEOGRAPHY}.{self.model}"

    @property
    def needs_prompt(self) -> bool:
        return any(f.name == "prompt" and f.required for f in self.fields)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


def _service(name: str, model: str, title: str, *fields: Field, **options) -> Operation:
    return Operation(name, model, title, tuple(fields), **options)


SERVICES: tuple[Operation, ...] = (
    _service("upscale-creative", "stability.stable-creative-upscale-v1:0", "Creative Upscale",
             PROMPT, Field("creativity", "number", 0.1, 0.5, default=0.3), NEGATIVE, SEED, OUTPUT, STYLE_PRESET,
             rule=ImageRule(min_pixels=4_096, max_pixels=1_048_576), output_pixels=16_777_216),
    _service("upscale-conservative", "stability.stable-conservative-upscale-v1:0", "Conservative Upscale",
             PROMPT, Field("creativity", "number", 0.1, 0.5, default=0.35), NEGATIVE, SEED, OUTPUT,
             # The page's intro says "64x64 to 1 megapixel": the tighter of its two statements.
             rule=ImageRule(max_pixels=1_048_576), output_pixels=16_777_216),
    _service("upscale-fast", "stability.stable-fast-upscale-v1:0", "Fast Upscale",
             OUTPUT, rule=ImageRule(min_side=32, max_side=1_536, min_pixels=1_024, max_pixels=1_048_576,
                                    max_aspect=48.0), output_scale=4.0),
    _service("inpaint", "stability.stable-image-inpaint-v1:0", "Inpaint",
             PROMPT, GROW_MASK, STYLE_PRESET, NEGATIVE, SEED, OUTPUT, companions=(MASK,),
             output_pixels=4_194_304),
    _service("outpaint", "stability.stable-outpaint-v1:0", "Outpaint",
             _direction("left"), _direction("right"), _direction("up"), _direction("down"),
             Field("creativity", "number", 0.1, 1.0, default=0.5), OPTIONAL_PROMPT, STYLE_PRESET, SEED, OUTPUT,
             one_of_positive=("left", "right", "up", "down")),
    _service("erase", "stability.stable-image-erase-object-v1:0", "Erase Object",
             GROW_MASK, SEED, OUTPUT, companions=(MASK,)),
    _service("remove-background", "stability.stable-image-remove-background-v1:0", "Remove Background",
             OUTPUT, transparent=True),
    _service("search-replace", "stability.stable-image-search-replace-v1:0", "Search and Replace",
             PROMPT, Field("search_prompt", "text", maximum=10_000, required=True), GROW_MASK, STYLE_PRESET,
             NEGATIVE, SEED, OUTPUT, output_pixels=4_194_304),
    _service("search-recolor", "stability.stable-image-search-recolor-v1:0", "Search and Recolor",
             PROMPT, Field("select_prompt", "text", maximum=10_000, required=True), GROW_MASK, STYLE_PRESET,
             NEGATIVE, SEED, OUTPUT),
    _service("control-sketch", "stability.stable-image-control-sketch-v1:0", "Control Sketch",
             PROMPT, CONTROL_STRENGTH, NEGATIVE, SEED, OUTPUT, STYLE_PRESET, source_type=GENERATED),
    _service("control-structure", "stability.stable-image-control-structure-v1:0", "Control Structure",
             PROMPT, CONTROL_STRENGTH, NEGATIVE, SEED, OUTPUT, STYLE_PRESET, source_type=GENERATED),
    _service("style-guide", "stability.stable-image-style-guide-v1:0", "Style Guide",
             PROMPT, Field("fidelity", "number", 0.0, 1.0, default=0.5),
             Field("aspect_ratio", "choice", choices=ASPECT_RATIOS, default="1:1"), NEGATIVE, SEED, OUTPUT,
             STYLE_PRESET, source_type=GENERATED, output_pixels=1_048_576),
    _service("style-transfer", "stability.stable-style-transfer-v1:0", "Style Transfer",
             OPTIONAL_PROMPT, NEGATIVE, SEED, OUTPUT,
             Field("composition_fidelity", "number", 0.0, 1.0, default=0.9),
             Field("style_strength", "number", 0.0, 1.0, default=1.0),
             Field("change_strength", "number", 0.1, 1.0, default=0.9),
             image_field="init_image", companions=(STYLE,), source_type=GENERATED),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in SERVICES}
BY_MODEL: dict[str, Operation] = {op.model: op for op in SERVICES}
NAMES: tuple[str, ...] = (IMAGE_TO_IMAGE, *BY_NAME)
COMPANIONS: tuple[Companion, ...] = (MASK, STYLE)
# Every service body field a job may set (their union; each service accepts its own subset).
SERVICE_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f.name for op in SERVICES for f in op.fields))
# Our own fields for operations: which one, its companions, and the mask's polarity.
OPERATION_FIELDS: tuple[str, ...] = ("operation", "mask", "style_image", "mask_invert")
# An explicit `mask: alpha` says "the image's alpha channel is the mask": no waiting for a mask file.
ALPHA_MASK = "alpha"


def source_type_of(operation: str) -> str:
    """The IPTC digital source type of an operation's output: image-to-image from a prompt generates."""
    return GENERATED if operation == IMAGE_TO_IMAGE else BY_NAME[operation].source_type


def default_models() -> dict[str, str]:
    """operation -> the model id a deployment uses unless configured otherwise."""
    return {op.name: op.default_model_id for op in SERVICES}


def normal_name(text: str) -> str:
    """`Remove_Background` -> `remove-background`: names are typed by people, in metadata too."""
    return text.strip().lower().replace("_", "-")

