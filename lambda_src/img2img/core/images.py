"""Image preparation with Pillow: refuse what is too large or not an image, then make it model-ready.

Order matters for speed and memory: read the header only, check the pixel limit, ask the JPEG decoder
for a reduced-size decode (draft), then convert, crop-or-pad and resize in one step, and only then
apply the EXIF orientation, to the small result.

The upload is untrusted input to Pillow's decoders, which can raise nearly any exception on a corrupt
file: every decode step runs under `_untrusted`, so what they raise becomes `invalid_image` (and a model
answer that fails to decode, a transient `model_error`). The geometry (boxes, sizes) is pure arithmetic
in `crop_box`, `pad_layout` and `planned_output_size`, exact for every size, and tested as such.
"""
from __future__ import annotations

import base64
import importlib
import io
import math
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from .errors import JobError
from .formats import ALLOWED_TEXT, CONTENT_TYPES, OUTPUT_FORMATS  # noqa: F401  (re-exported)

ORIENTATION_TAG = 0x0112
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # as ImageOps.exif_transpose
_SWAPS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
          Image.Transpose.TRANSVERSE)
# Pillow plugins that turn the image upright themselves, so their EXIF orientation is not ours to apply:
# Pillow 13's TIFF reports the upright size at open and runs exif_transpose in load_end; pillow-heif
# applies the irot/imir boxes (and reports orientation 1). JPEG, MPO, PNG (eXIf), WebP and AVIF
# decode the stored pixels and leave the orientation to us. tests/unit/test_images_orientation.py
# checks this table against Pillow's behaviour.
UPRIGHT_ON_LOAD = frozenset({"TIFF", "HEIF"})
# The Pillow plugins an upload may be decoded by (JPEG's opener also answers MPO, the multi-picture
# JPEG phones write; HEIF exists once pillow-heif is registered). Keeping the other ~40 (EPS via
# Ghostscript, PSD, ICO, FITS, ...) out shrinks the decoder surface, and their import time.
_PLUGINS = {"JPEG": "JpegImagePlugin", "PNG": "PngImagePlugin", "WEBP": "WebPImagePlugin",
            "GIF": "GifImagePlugin", "BMP": "BmpImagePlugin", "TIFF": "TiffImagePlugin",
            "AVIF": "AvifImagePlugin", "HEIF": None}
SUPPORTED_TEXT = "JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC/HEIF"
# Largest side each output format can be written with, as Pillow's encoders enforce it: libjpeg's
# JPEG_MAX_DIMENSION (65,500, not 65,535), libwebp's WEBP_MAX_DIMENSION, and PNG's 31-bit width/height.
MAX_SIDE = {"png": 2**31 - 1, "jpeg": 65_500, "webp": 16_383}
PAD_COLOR = (0, 0, 0)
ALPHA_BACKGROUND = (255, 255, 255)
# Our own limit is checked on the header of every upload (below), before any pixel is decoded.
# Pillow's global bomb check would apply one process-wide number to uploads and model outputs alike.
Image.MAX_IMAGE_PIXELS = None
_heif_registered = False

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class SourceInfo:
    width: int         # upright (as displayed)
    height: int
    format: str
    mode: str
    frames: int
    orientation: int   # the file's EXIF orientation as Pillow reports it (1 when none)
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
    # The source's alpha channel at the prepared size (8-bit grey PNG, 255 = opaque), when asked for
    # and the source has one: the mask of a job without a mask image (transparent = edit).
    alpha: bytes | None = None

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


def _input_formats() -> tuple[str, ...]:
    """The allowed plugins that are registered (importing ours, never Pillow's whole set)."""
    for module in _PLUGINS.values():
        if module:
            importlib.import_module(f"PIL.{module}")
    return tuple(name for name in _PLUGINS if name in Image.OPEN)


@contextmanager
def _untrusted(what: str, code: str = "invalid_image", retryable: bool = False) -> Iterator[None]:
    """Whatever a decoder raises on bad bytes becomes `code`; our own JobErrors and MemoryError pass."""
    try:
        yield
    except (JobError, MemoryError):
        raise
    except Exception as exc:
        raise JobError(code, f"{what} ({type(exc).__name__}: {exc})"[:1000], retryable=retryable) from None


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and enforce the pixel limit before any pixel is decoded."""
    if not data:
        raise JobError("invalid_image", "the input object is empty (0 bytes)")
    with _untrusted("the image header is corrupt"):
        _ensure_heif(data)
        try:
            image = Image.open(io.BytesIO(data), formats=_input_formats())
        except UnidentifiedImageError:
            raise JobError("invalid_image", f"the input is not an image in a supported format (it starts "
                           f"with {data[:12]!r}); send {SUPPORTED_TEXT}") from None
        width, height = image.size
    if width * height > max_pixels:
        raise JobError("image_too_large", f"the image is {width}x{height} = {width * height:,} pixels; this "
                       f"deployment accepts at most {max_pixels:,} pixels")
    if width < 1 or height < 1:
        raise JobError("invalid_image", f"the image has no pixels ({width}x{height})")
    return image


def prepare(data: bytes, target_size: Callable[[int, int], tuple[int, int]], fit: str = "crop",
            max_pixels: int = 40_000_000, *, alpha: bool = False, keep_alpha: bool = False) -> PreparedImage:
    """Turn any supported upload into an RGB PNG of the model's size, fitted by `crop`, `pad` or `keep`
    (resized as it is: `target_size` keeps the aspect ratio). `alpha`: also return the source's alpha
    channel at that size; `keep_alpha`: send RGBA (transparency kept) instead of flattening it."""
    image = open_image(data, max_pixels)
    fmt = image.format or "unknown"
    source_mode = image.mode
    with _untrusted("the image metadata is corrupt"):
        frames = getattr(image, "n_frames", 1)
        orientation = _orientation(image)
    # Where Pillow turns the image upright on load, its size is already upright and nothing is left to do.
    transpose = None if fmt in UPRIGHT_ON_LOAD else _TRANSPOSE.get(orientation)
    swap = transpose in _SWAPS
    with _untrusted("the image data is truncated or corrupt"):
        image.seek(0)  # animated GIF/WebP/TIFF: the first frame
        stored_w, stored_h = image.size
        src_w, src_h = (stored_h, stored_w) if swap else (stored_w, stored_h)
        target = target_size(src_w, src_h)
        stored_target = (target[1], target[0]) if swap else target
        region = _draft(image, stored_target, fit)
        image.load()
        # Transparency is flattened after the resize (on ~1 MP, not the full image); other modes become
        # RGB first, since Pillow resizes palette and bilevel images only with nearest-neighbour.
        image = image.convert("RGBA") if _has_alpha(image) and image.mode != "RGBA" else image
        image = image if image.mode == "RGBA" else to_rgb(image)
    # Orientation is applied after the resize, to the ~1 MP result rather than the decoded image.
    canvas, box, alpha_channel = _fit(image, region, (src_w, src_h), target, fit, transpose, keep_alpha)
    source = SourceInfo(src_w, src_h, fmt.lower(), source_mode, frames, orientation, len(data))
    return PreparedImage(png_bytes(canvas), target[0], target[1], source, fit, box,
                         png_bytes(alpha_channel) if alpha and alpha_channel is not None else None)


def png_bytes(image: Image.Image) -> bytes:
    """Level 1 with the RLE strategy: the fastest and smallest of zlib's fast settings on photos
    (docs/performance.md); the body is base64 anyway."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
    return buffer.getvalue()


def _draft(image: Image.Image, stored_target: tuple[int, int], fit: str) -> Box:
    """Ask for a DCT-scaled decode (1/2, 1/4 or 1/8, JPEG only) when that still covers the target.

    Returns where the whole source lies in the decoded image's coordinates: a draft decode is the
    source divided by its scale, rounded up to whole pixels, so the boxes must be computed in it."""
    w, h = image.size
    scale = (max if fit in ("crop", "keep") else min)(stored_target[0] / w, stored_target[1] / h)
    if scale < 1:
        drafted = image.draft(None, (math.ceil(w * scale), math.ceil(h * scale)))
        if drafted is not None:
            x0, y0, x1, y1 = drafted[1]
            dw, dh = image.size
            return (max(0.0, x0), max(0.0, y0), min(float(dw), x1), min(float(dh), y1))
    return (0.0, 0.0, float(w), float(h))


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(ORIENTATION_TAG, 1))
    except MemoryError:
        raise
    except Exception:  # an unreadable EXIF block says nothing about orientation: the stored one (1) stands
        return 1
    return value if value in range(1, 9) else 1


def to_rgb(image: Image.Image) -> Image.Image:
    """Every mode to 8-bit RGB: alpha over white, 16-bit and float scaled (not clipped) to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        # "F" carries every integer mode (I;16B/L/N included) exactly; getextrema has no I;16B/L/N.
        as_float = image if mode == "F" else image.convert("F")
        low, high = as_float.getextrema()
        if not (math.isfinite(low) and math.isfinite(high)):
            low, high = 0.0, 1.0  # inf/nan in a float image: read it as 0..1 and let L clip the rest
        span = (high - low) or 1
        if mode != "F" and low >= 0 and high <= 255:
            low, span = 0, 255  # an 8-bit range stored in a wide mode: keep it
        gray = as_float.point(lambda v: (v - low) * (255.0 / span)).convert("L")
        return gray.convert("RGB")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    try:
        return image.convert("RGB")  # also LAB and HSV: Pillow 13 converts both colorimetrically
    except ValueError:
        raise JobError("invalid_image", f"the image's colour mode {mode} cannot be converted to RGB") from None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def crop_box(region: Box, target: tuple[int, int]) -> Box:
    """The centred part of `region` with the aspect ratio of `target`, never outside `region`.

    The long side is cut, the other kept exactly (its bounds are `region`'s own numbers); the cut side
    is clamped to `region`, so float rounding cannot push the box past the image (Pillow refuses that)."""
    x0, y0, x1, y1 = region
    rw, rh = x1 - x0, y1 - y0
    tw, th = target
    if rw * th > rh * tw:  # wider than the target: keep the full height
        cw = min(rw, rh * tw / th)
        left = x0 + (rw - cw) / 2
        return (max(x0, left), y0, min(x1, left + cw), y1)
    ch = min(rh, rw * th / tw)
    top = y0 + (rh - ch) / 2
    return (x0, max(y0, top), x1, min(y1, top + ch))


def pad_layout(source: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where a source of this (upright) size goes in a letterboxed `target`: x, y, width, height.

    Integer arithmetic: the long side fills the target exactly, the other is rounded (half up) and
    kept within 1..target, centred with the odd pixel on the right/bottom."""
    sw, sh = source
    tw, th = target
    if sw * th >= sh * tw:  # wider than the target (or the same aspect): full width
        nw, nh = tw, min(th, max(1, (2 * sh * tw + sw) // (2 * sw)))
    else:
        nw, nh = min(tw, max(1, (2 * sw * th + sh) // (2 * sh))), th
    return (tw - nw) // 2, (th - nh) // 2, nw, nh


def _fit(image: Image.Image, region: Box, source: tuple[int, int], target: tuple[int, int], fit: str,
         transpose: Image.Transpose | None = None, keep_alpha: bool = False):
    """Centre-crop (one resize with a source box), letterbox onto a canvas of exactly `target`, or
    (`keep`) resize the whole picture to `target`, whose aspect ratio the caller kept.

    `image` is in its stored orientation and `transpose` (EXIF) turns it upright: the resize works in
    stored coordinates and only its result is transposed. `region` is where the source lies in `image`
    (all of it, or the draft decode's box); `source` is the upright size of the original.
    Returns (canvas, content box, alpha channel at the target size or None).
    """
    tw, th = target
    swap = transpose in _SWAPS

    def resized(size: tuple[int, int], box: Box) -> tuple[Image.Image, Image.Image | None]:
        out = image.resize((size[1], size[0]) if swap else size, Image.Resampling.LANCZOS, box=box,
                           reducing_gap=3.0)
        alpha = out.getchannel("A") if out.mode == "RGBA" else None
        if not (keep_alpha and out.mode == "RGBA"):
            out = to_rgb(out)  # RGB already, or RGBA flattened over white at the small size
        if transpose is not None:
            out = out.transpose(transpose)
            alpha = alpha.transpose(transpose) if alpha is not None else None
        return out, alpha

    if fit == "keep":
        out, alpha = resized(target, region)
        return out, (0, 0, tw, th), alpha
    if fit == "crop":
        out, alpha = resized(target, crop_box(region, (th, tw) if swap else target))
        return out, (0, 0, tw, th), alpha
    x, y, nw, nh = pad_layout(source, target)
    picture, alpha = resized((nw, nh), region)
    canvas = Image.new(picture.mode, target, PAD_COLOR if picture.mode == "RGB" else (*PAD_COLOR, 0))
    canvas.paste(picture, (x, y))
    if alpha is not None:
        opaque = Image.new("L", target, 255)  # the borders are not the picture's: opaque (kept by a mask)
        opaque.paste(alpha, (x, y))
        alpha = opaque
    return canvas, (x, y, x + nw, y + nh), alpha


# ---- output -----------------------------------------------------------------------------------------

def planned_output_size(prepared: PreparedImage, restore_aspect: bool) -> tuple[int, int]:
    """The size `finish_output` will store if the model answers at the prepared size (SDXL and SD3.5
    do): checkable with `check_output_size` before the model is paid."""
    if not restore_aspect:
        return prepared.width, prepared.height
    return _restore_plan((prepared.width, prepared.height), prepared)[1]


def check_output_size(width: int, height: int, output_format: str) -> None:
    """Refuse an output the format cannot hold (`invalid_parameters`), saying what to ask for instead."""
    limit = MAX_SIDE.get(output_format)
    if limit is None:
        raise JobError("invalid_parameters", f"output_format {output_format!r} is not one of {ALLOWED_TEXT}")
    if width > limit or height > limit:
        raise JobError("invalid_parameters", f"the output image would be {width}x{height} pixels, but "
                       f"{output_format} allows at most {limit:,} pixels per side; ask for output_format png, "
                       f"or leave restore_aspect off to keep the model's size",
                       details={"output_size": [width, height], "max_side": limit})


def finish_output(data: bytes, prepared: PreparedImage, output_format: str, restore_aspect: bool) -> OutputImage:
    """The stored image: the model's bytes untouched when they already fit, else converted once."""
    model_format = sniff_format(data)
    if model_format not in CONTENT_TYPES:
        raise JobError("model_error", "the model returned bytes that are not PNG, JPEG or WebP", retryable=True)
    with _untrusted("the model returned an image that cannot be decoded", "model_error", retryable=True):
        image = Image.open(io.BytesIO(data), formats=(model_format.upper(),))
        if model_format == output_format and not restore_aspect:
            return OutputImage(data, output_format, *image.size)
        image.load()
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA") if _has_alpha(image) else to_rgb(image)
    if restore_aspect:
        image = _restore_aspect(image, prepared)
    check_output_size(image.width, image.height, output_format)
    if output_format == "jpeg":
        image = to_rgb(image)  # alpha over white, as for the input
    buffer = io.BytesIO()
    options = {"png": {"compress_level": 6}, "jpeg": {"quality": 90, "optimize": True},
               "webp": {"quality": 90, "method": 4}}[output_format]
    image.save(buffer, format=output_format.upper(), **options)
    return OutputImage(buffer.getvalue(), output_format, *image.size)


def _restore_plan(size: tuple[int, int],
                  prepared: PreparedImage) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
    """For a model answer of `size`: the crop that cuts the padding off (or None) and the stored size.

    After pad, the content box scaled to the answer; after crop, a rescale to the input's aspect ratio
    at the answer's pixel count."""
    w, h = size
    x0, y0, x1, y1 = prepared.content_box
    if prepared.fit == "pad" and (x0, y0, x1, y1) != (0, 0, prepared.width, prepared.height):
        left, top = round(x0 * w / prepared.width), round(y0 * h / prepared.height)
        right = max(left + 1, min(w, round(x1 * w / prepared.width)))
        bottom = max(top + 1, min(h, round(y1 * h / prepared.height)))
        left, top = min(left, w - 1), min(top, h - 1)
        return (left, top, right, bottom), (right - left, bottom - top)
    aspect = prepared.source.width / prepared.source.height
    nh = max(1, round(math.sqrt(w * h / aspect)))
    nw = max(1, round(nh * aspect))
    return None, (nw, nh)


def _restore_aspect(image: Image.Image, prepared: PreparedImage) -> Image.Image:
    """Back to the input's aspect ratio: cut the padding off, or rescale a cropped fit."""
    box, size = _restore_plan(image.size, prepared)
    if box is not None:
        return image.crop(box)
    return image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image
