"""Image preparation with Pillow: refuse what is too large or not an image, then make it model-ready.

Order matters for speed and memory: read the header only, check the pixel limit, ask the JPEG decoder
for a reduced-size decode (draft), then convert, crop-or-pad and resize in one step, and only then
apply the EXIF orientation, to the small result.
"""
from __future__ import annotations

import base64
import io
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from .errors import JobError
from .formats import CONTENT_TYPES, OUTPUT_FORMATS  # noqa: F401  (re-exported)

ORIENTATION_TAG = 0x0112
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # as ImageOps.exif_transpose
_SWAPS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
          Image.Transpose.TRANSVERSE)
PAD_COLOR = (0, 0, 0)
ALPHA_BACKGROUND = (255, 255, 255)
# Our own limit is checked on the header of every upload (below), before any pixel is decoded.
# Pillow's global bomb check would apply one process-wide number to uploads and model outputs alike.
Image.MAX_IMAGE_PIXELS = None
_heif_registered = False
# A decoder reading untrusted bytes can raise nearly anything (struct.error, IndexError, TypeError, ...):
# every exception but our own errors and running out of memory means the input is not a readable image.
DECODER_FAULTS = (Exception,)
# Formats whose Pillow plugin turns the image upright itself on open (its EXIF still says how it was
# stored): applying the orientation again would turn it twice. A test pins this per format.
UPRIGHT_ON_OPEN = frozenset({"tiff"})
# Largest side each output format can store (PNG's is 2**31 - 1).
MAX_OUTPUT_SIDE = {"png": 2**31 - 1, "jpeg": 65_535, "webp": 16_383}


def _corrupt(what: str, exc: BaseException) -> JobError:
    if isinstance(exc, (JobError, MemoryError)):
        raise exc
    return JobError("invalid_image", f"{what}: {type(exc).__name__}: {exc}"[:500])


@dataclass(frozen=True)
class SourceInfo:
    width: int
    height: int
    format: str
    mode: str
    frames: int
    orientation: int
    bytes: int


@dataclass(frozen=True)
class PreparedImage:
    """The model-ready image (PNG) and what the output step needs to undo the fitting."""

    png: bytes
    width: int
    height: int
    source: SourceInfo
    fit: str
    content_box: tuple[int, int, int, int]  # where the source lies inside the canvas (pad leaves borders)

    @property
    def base64(self) -> str:
        return base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class OutputImage:
    data: bytes
    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


_SIGNATURES = (
    ("png", lambda d: d.startswith(b"\x89PNG\r\n\x1a\n")),
    ("jpeg", lambda d: d.startswith(b"\xff\xd8")),
    ("webp", lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP"),
    ("gif", lambda d: d[:4] == b"GIF8"),
    ("bmp", lambda d: d[:2] == b"BM"),
    ("tiff", lambda d: d[:4] in (b"II*\x00", b"MM\x00*")),
    ("heic", lambda d: d[4:8] == b"ftyp"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format named by the first bytes (no decoding), or None."""
    return next((name for name, matches in _SIGNATURES if matches(data)), None)


def _ensure_heif(data: bytes) -> None:
    """Register pillow-heif only when a HEIC/HEIF arrives: its import costs cold-start time."""
    global _heif_registered  # noqa: PLW0603 - one registration per process, on first need
    if not _heif_registered and data[4:8] == b"ftyp" and data[8:12] in (
            b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"):
        from pillow_heif import register_heif_opener

        register_heif_opener()
        _heif_registered = True


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and enforce the pixel limit before any pixel is decoded."""
    if not data:
        raise JobError("invalid_image", "the input object is empty (0 bytes)")
    _ensure_heif(data)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise JobError("invalid_image", f"the input is not an image Pillow can read (it starts with "
                       f"{data[:12]!r}); send JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC") from None
    except DECODER_FAULTS as exc:
        raise _corrupt("the image header is corrupt", exc) from None
    width, height = image.size
    if width * height > max_pixels:
        raise JobError("image_too_large", f"the image is {width}x{height} = {width * height:,} pixels; this "
                       f"deployment accepts at most {max_pixels:,} pixels")
    if width < 1 or height < 1:
        raise JobError("invalid_image", f"the image has no pixels ({width}x{height})")
    return image


def prepare(data: bytes, target_size: Callable[[int, int], tuple[int, int]], fit: str = "crop",
            max_pixels: int = 40_000_000) -> PreparedImage:
    """Turn any supported upload into an RGB PNG of the model's size, fitted by `crop` or `pad`."""
    image = open_image(data, max_pixels)
    try:
        fmt = (image.format or "unknown").lower()
        source_mode = image.mode
        frames = getattr(image, "n_frames", 1)
    except DECODER_FAULTS as exc:
        raise _corrupt("the image is corrupt", exc) from None
    orientation = _orientation(image)
    transpose = None if fmt in UPRIGHT_ON_OPEN else _TRANSPOSE.get(orientation)
    raw_w, raw_h = image.size
    src_w, src_h = (raw_h, raw_w) if transpose in _SWAPS else (raw_w, raw_h)
    target_w, target_h = target_size(src_w, src_h)
    scale = (max if fit == "crop" else min)(target_w / src_w, target_h / src_h)
    try:
        if fmt == "jpeg" and scale < 1:
            need = (math.ceil(raw_w * scale), math.ceil(raw_h * scale))
            image.draft("RGB", need)  # DCT scaling: decode at 1/2, 1/4 or 1/8 size when that is enough
        image.seek(0)  # animated GIF/WebP/TIFF: the first frame
        image.load()
        # Transparency is flattened after the resize (on ~1 MP, not the full image); other modes become
        # RGB first, since Pillow resizes palette and bilevel images only with nearest-neighbour.
        image = image.convert("RGBA") if _has_alpha(image) and image.mode != "RGBA" else image
        image = image if image.mode == "RGBA" else to_rgb(image)
        # Orientation is applied after the resize, to the ~1 MP result rather than the decoded image.
        canvas, box = _fit(image, (target_w, target_h), fit, transpose)
    except DECODER_FAULTS as exc:
        raise _corrupt("the image data is truncated or corrupt", exc) from None
    buffer = io.BytesIO()
    # Level 1 with the RLE strategy: the fastest and smallest of zlib's fast settings on photos
    # (docs/performance.md); the body is base64 anyway.
    canvas.save(buffer, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
    source = SourceInfo(src_w, src_h, fmt, source_mode, frames, orientation, len(data))
    return PreparedImage(buffer.getvalue(), target_w, target_h, source, fit, box)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # a broken EXIF block must not fail the job: the pixels may be fine
        return 1


def to_rgb(image: Image.Image) -> Image.Image:
    """Every mode to 8-bit RGB: alpha over white, 16-bit and float scaled (not clipped) to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        if mode.startswith("I;16"):  # I;16B and friends: Pillow computes extrema only in I
            image, mode = image.convert("I"), "I"
        low, high = image.getextrema()
        as_float = image.convert("F") if mode != "F" else image
        span = (high - low) or 1
        if mode.startswith("I") and low >= 0 and high <= 255:
            low, span = 0, 255  # an 8-bit range stored in a wide mode: keep it
        gray = as_float.point(lambda v: (v - low) * (255.0 / span)).convert("L")
        return gray.convert("RGB")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    try:
        return image.convert("RGB")
    except ValueError:
        try:  # modes Pillow converts to RGB only by way of another one (e.g. HSV via RGB is direct, LAB not)
            return image.convert("RGBA").convert("RGB")
        except ValueError:
            raise JobError("invalid_image", f"the image's colour mode {mode} cannot be converted to RGB") from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def _fit(image: Image.Image, target: tuple[int, int], fit: str, transpose: Image.Transpose | None = None):
    """Centre-crop (one resize with a source box) or letterbox onto a canvas of exactly `target`.

    `image` is in its stored orientation and `transpose` (EXIF) turns it upright: the resize works in
    stored coordinates and only its result is transposed.
    """
    tw, th = target
    w, h = image.size
    swap = transpose in _SWAPS
    uw, uh = (h, w) if swap else (w, h)  # upright size

    def resized(size: tuple[int, int], box=None) -> Image.Image:
        out = image.resize((size[1], size[0]) if swap else size, Image.Resampling.LANCZOS, box=box,
                           reducing_gap=3.0)
        out = to_rgb(out)  # RGB already, or RGBA flattened over white at the small size
        return out.transpose(transpose) if transpose is not None else out

    if fit == "crop":
        return resized(target, crop_box((w, h), target, swap)), (0, 0, tw, th)
    scale = min(tw / uw, th / uh)
    nw, nh = min(tw, max(1, round(uw * scale))), min(th, max(1, round(uh * scale)))
    canvas = Image.new("RGB", target, PAD_COLOR)
    x, y = (tw - nw) // 2, (th - nh) // 2
    canvas.paste(resized((nw, nh)), (x, y))
    return canvas, (x, y, x + nw, y + nh)


def crop_box(stored: tuple[int, int], target: tuple[int, int], swap: bool) -> tuple[float, float, float, float]:
    """The centred region of the stored image (`swap`: it is stored rotated by 90 degrees) with the
    target's aspect ratio. Computed in floats, it can land a hair outside the image (1000x872 on SDXL):
    it is clamped exactly to the image, so every size works."""
    (w, h), (tw, th) = stored, target
    uw, uh = (h, w) if swap else (w, h)
    scale = max(tw / uw, th / uh)
    cw, ch = (th / scale, tw / scale) if swap else (tw / scale, th / scale)
    return (max(0.0, (w - cw) / 2), max(0.0, (h - ch) / 2), min(float(w), (w + cw) / 2),
            min(float(h), (h + ch) / 2))


def finish_output(data: bytes, prepared: PreparedImage, output_format: str, restore_aspect: bool) -> OutputImage:
    """The stored image: the model's bytes untouched when they already fit, else converted once."""
    model_format = sniff_format(data)
    if model_format not in CONTENT_TYPES:
        raise JobError("model_error", "the model returned bytes that are not PNG, JPEG or WebP", retryable=True)
    try:
        image = Image.open(io.BytesIO(data))
        if model_format == output_format and not restore_aspect:
            return OutputImage(data, output_format, *image.size)
        image.load()
    except DECODER_FAULTS:
        raise JobError("model_error", "the model returned an image that does not decode", retryable=True) from None
    if restore_aspect:
        image = _restore_aspect(image, prepared)
    if output_format == "jpeg":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    options = {"png": {"compress_level": 6}, "jpeg": {"quality": 90, "optimize": True},
               "webp": {"quality": 90, "method": 4}}[output_format]
    image.save(buffer, format=output_format.upper(), **options)
    return OutputImage(buffer.getvalue(), output_format, *image.size)


def planned_output_size(prepared: PreparedImage, restore_aspect: bool) -> tuple[int, int]:
    """The size finish_output will store, for a model that answers at the prepared size."""
    if not restore_aspect:
        return prepared.width, prepared.height
    return _restored_size((prepared.width, prepared.height), prepared)


def check_output_size(width: int, height: int, output_format: str) -> None:
    """Refuse, before the model is paid, an output its format cannot store (JPEG/WebP side limits)."""
    limit = MAX_OUTPUT_SIDE[output_format]
    if max(width, height) > limit:
        raise JobError("invalid_parameters", f"the output would be {width}x{height}; {output_format} stores at "
                       f"most {limit:,} px per side: choose output_format png, or drop restore_aspect",
                       details={"errors": [{"field": "output_format", "source": "job parameters",
                                            "value": output_format, "message": f"at most {limit:,} px per side",
                                            "allowed": "png for extreme aspect ratios with restore_aspect"}]})


def _restored_size(size: tuple[int, int], prepared: PreparedImage) -> tuple[int, int]:
    w, h = size
    sx, sy = w / prepared.width, h / prepared.height
    x0, y0, x1, y1 = prepared.content_box
    if prepared.fit == "pad" and (x0, y0, x1, y1) != (0, 0, prepared.width, prepared.height):
        return max(1, round(x1 * sx) - round(x0 * sx)), max(1, round(y1 * sy) - round(y0 * sy))
    aspect = prepared.source.width / prepared.source.height
    nh = max(1, round(math.sqrt(w * h / aspect)))
    return max(1, round(nh * aspect)), nh


def _restore_aspect(image: Image.Image, prepared: PreparedImage) -> Image.Image:
    """Back to the input's aspect ratio: cut the padding off, or rescale a cropped fit."""
    w, h = image.size
    sx, sy = w / prepared.width, h / prepared.height
    x0, y0, x1, y1 = prepared.content_box
    if prepared.fit == "pad" and (x0, y0, x1, y1) != (0, 0, prepared.width, prepared.height):
        return image.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)))
    size = _restored_size((w, h), prepared)
    return image.resize(size, Image.Resampling.LANCZOS) if size != (w, h) else image
