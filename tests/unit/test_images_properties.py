"""Image preparation over its whole input space (hypothesis): every size, mode, format, orientation,
fit and model gives a prepared image of exactly the model's size, upright, or a permanent error."""
from __future__ import annotations

import io
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from img2img.core.errors import JobError
from img2img.core.images import (
    MAX_OUTPUT_SIDE,
    UPRIGHT_ON_OPEN,
    check_output_size,
    crop_box,
    finish_output,
    planned_output_size,
    prepare,
)
from img2img.models.sd35 import SD35Adapter
from img2img.models.sdxl import SDXLAdapter

ADAPTERS = {"sdxl": SDXLAdapter(), "sd35": SD35Adapter()}
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "I;16B", "F")
# Inverse of the transposition EXIF orientation n asks for: stored = INVERSE[n](upright).
INVERSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_270}
PERMANENT = ("invalid_image", "image_too_large")


def _storable() -> list[tuple[str, str]]:
    """(format, mode) pairs Pillow can write, found by trying: the space the properties draw from."""
    pairs = []
    for fmt in FORMATS:
        for mode in MODES:
            try:
                Image.new(mode, (8, 8)).save(io.BytesIO(), fmt)
                pairs.append((fmt, mode))
            except (OSError, ValueError, KeyError, TypeError):
                pass
    return pairs


STORABLE = _storable()


@settings(max_examples=500)
@given(w=st.integers(1, 8000), h=st.integers(1, 8000), swap=st.booleans(), model=st.sampled_from(sorted(ADAPTERS)))
def test_the_crop_box_lies_inside_every_image_size_and_has_the_target_aspect(w, h, swap, model):
    upright = (h, w) if swap else (w, h)
    target = ADAPTERS[model].target_size(*upright)
    x0, y0, x1, y1 = crop_box((w, h), target, swap)
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    bw, bh = (y1 - y0, x1 - x0) if swap else (x1 - x0, y1 - y0)
    assert math.isclose(bw / bh, target[0] / target[1], rel_tol=0.02) or min(bw, bh) < 50


@example(w=1000, h=872, pair=("JPEG", "RGB"), fit="crop", model="sdxl")  # the float crop box crash
@example(w=1206, h=422, pair=("PNG", "RGB"), fit="crop", model="sd35")
@example(w=300, h=200, pair=("TIFF", "I;16B"), fit="pad", model="sd35")  # scanners' 16-bit big-endian grey
@given(w=st.integers(1, 1400), h=st.integers(1, 1400), pair=st.sampled_from(STORABLE),
       fit=st.sampled_from(("crop", "pad")), model=st.sampled_from(sorted(ADAPTERS)))
def test_every_size_mode_and_format_prepares_to_the_model_size_or_fails_permanently(w, h, pair, fit, model):
    fmt, mode = pair
    buffer = io.BytesIO()
    Image.new(mode, (w, h)).save(buffer, fmt)
    adapter = ADAPTERS[model]
    try:
        prepared = prepare(buffer.getvalue(), adapter.target_size, fit, 40_000_000)
    except JobError as exc:
        assert exc.code in PERMANENT and not exc.retryable, exc
        return
    assert (prepared.width, prepared.height) == adapter.target_size(w, h)
    assert Image.open(io.BytesIO(prepared.png)).size == (prepared.width, prepared.height)


def _marked(w: int, h: int) -> Image.Image:
    """Upright test card: the top-left quarter red, the rest green."""
    image = Image.new("RGB", (w, h), (0, 200, 0))
    image.paste((220, 0, 0), (0, 0, w // 2, h // 2))
    return image


@given(w=st.integers(32, 1200), h=st.integers(32, 1200), orientation=st.integers(1, 8),
       fmt=st.sampled_from(("JPEG", "PNG", "WEBP", "TIFF")), fit=st.sampled_from(("crop", "pad")),
       model=st.sampled_from(sorted(ADAPTERS)))
def test_every_orientation_comes_out_upright(w, h, orientation, fmt, fit, model):
    upright = _marked(w, h)
    stored = upright.transpose(INVERSE[orientation]) if orientation in INVERSE else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, fmt, exif=exif)
    prepared = prepare(buffer.getvalue(), ADAPTERS[model].target_size, fit, 40_000_000)
    assert (prepared.source.width, prepared.source.height) == (w, h)
    out = Image.open(io.BytesIO(prepared.png)).convert("RGB")
    x0, y0, x1, y1 = prepared.content_box
    near = out.getpixel((x0 + (x1 - x0) // 10, y0 + (y1 - y0) // 10))
    far = out.getpixel((x0 + (x1 - x0) * 9 // 10, y0 + (y1 - y0) * 9 // 10))
    assert near[0] > near[1] and far[1] > far[0], (fmt, orientation, near, far)


def test_pillow_still_turns_exactly_these_formats_upright_on_open():
    """If Pillow starts (or stops) applying EXIF orientation for a format, UPRIGHT_ON_OPEN must follow."""
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        exif = Image.Exif()
        exif[0x0112] = 6
        buffer = io.BytesIO()
        Image.new("RGB", (40, 20)).save(buffer, fmt, exif=exif)
        turned = Image.open(io.BytesIO(buffer.getvalue())).size == (20, 40)
        assert turned == (fmt.lower() in UPRIGHT_ON_OPEN), fmt


SIZES = st.integers(1, 60000).flatmap(lambda w: st.tuples(st.just(w), st.integers(1, max(1, 2_000_000 // w))))


@given(size=st.one_of(SIZES, SIZES.map(lambda s: s[::-1])), fit=st.sampled_from(("crop", "pad")),
       fmt=st.sampled_from(sorted(MAX_OUTPUT_SIDE)), model=st.sampled_from(sorted(ADAPTERS)))
@settings(max_examples=25)
def test_restore_aspect_outputs_are_refused_before_the_call_or_stored(size, fit, fmt, model):
    """planned_output_size is what finish_output stores; check_output_size refuses what the format
    cannot hold, so nothing is discovered after the model was paid."""
    w, h = size
    source = io.BytesIO()
    Image.new("L", (w, h)).save(source, "PNG")
    adapter = ADAPTERS[model]
    prepared = prepare(source.getvalue(), adapter.target_size, fit, 40_000_000)
    planned = planned_output_size(prepared, True)
    try:
        check_output_size(*planned, fmt)
    except JobError as exc:
        assert exc.code == "invalid_parameters" and max(planned) > MAX_OUTPUT_SIDE[fmt]
        return
    model_png = io.BytesIO()
    Image.new("RGB", (prepared.width, prepared.height)).save(model_png, "PNG")
    output = finish_output(model_png.getvalue(), prepared, fmt, True)
    assert (output.width, output.height) == planned
