"""Properties of image preparation over the whole input space: every size 1..8000 per side, every mode
each format stores, every EXIF orientation, both fits and both models. The answer is always an RGB PNG
of exactly the model's size, upright, or a permanent invalid_image/image_too_large - never another
exception.

Real encodes are bounded in area so one example stays cheap; the box arithmetic is checked directly
over the full range (and tests/unit/test_images_sizes.py encodes the extreme sizes for real)."""
from __future__ import annotations

import math

import imagegen as g
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image, ImageStat

from img2img.core import images
from img2img.core.errors import JobError

ADAPTERS = g.adapters()
SIDE = st.integers(1, 8000)
# What each format can store, as Pillow writes it (a mode it cannot write is not an upload we can get).
FORMAT_MODES = {
    "JPEG": ("L", "RGB", "CMYK"),
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"),
    "WEBP": ("RGB", "RGBA"),
    "GIF": ("L", "P", "RGB"),
    "BMP": ("1", "L", "P", "RGB"),
    "TIFF": ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "I;16", "I;16B", "I;16L", "F"),
    "AVIF": ("RGB",),
}
if g.has_heif():
    FORMAT_MODES["HEIF"] = ("RGB", "RGBA")
EXIF_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF", "HEIF", "AVIF"}
# Area per example: the 1 MP output PNG costs the same for all; the encoders differ a lot.
AREA = {"HEIF": 150_000, "AVIF": 150_000}
DEFAULT_AREA = 1_000_000
# Upright quadrants TL, TR, BL, BR: four luminances far apart, so every one of the 8 orientations
# (and a grey or 1-bit rendering of them) gives a different arrangement.
MARKS = (g.RED, g.GREEN, g.BLUE, g.YELLOW)
LUMA = [Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)) for c in MARKS]


@st.composite
def uploads(draw):
    fmt = draw(st.sampled_from(sorted(FORMAT_MODES)))
    mode = draw(st.sampled_from(FORMAT_MODES[fmt]))
    area = AREA.get(fmt, DEFAULT_AREA)
    width = draw(st.one_of(st.integers(64, 1200), SIDE))  # photos' sizes, and the whole range
    height = draw(st.integers(1, max(1, min(8000, area // width))))
    orientation = draw(st.integers(1, 8)) if fmt in EXIF_FORMATS else 1
    return fmt, mode, (width, height), orientation


def encode_upload(fmt, mode, size, orientation) -> bytes:
    stored = g.in_mode(g.stored_for(g.quadrants(size, MARKS), orientation), mode)
    options = {"exif": g.exif_bytes(orientation)} if orientation != 1 else {}
    options.update({"JPEG": {"quality": 90}, "WEBP": {"quality": 90}, "AVIF": {"speed": 10},
                    "HEIF": {"quality": 80}}.get(fmt, {}))
    try:
        return g.encode(stored, fmt, **options)
    except (OSError, RuntimeError, ValueError):  # e.g. x265 refuses a 4217x1 HEIC: no such upload exists
        assume(False)
        raise


def quadrant_means(out: Image.Image, box) -> list[float]:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    rw, rh = max(1, w // 16), max(1, h // 16)
    grey = out.convert("L")
    means = []
    for fy in (0.25, 0.75):
        for fx in (0.25, 0.75):
            cx, cy = x0 + int(w * fx), y0 + int(h * fy)
            means.append(ImageStat.Stat(grey.crop((cx - rw, cy - rh, cx + rw + 1, cy + rh + 1))).mean[0])
    return means


def markers_resolvable(size, target, fit, box) -> bool:
    """Whether the quadrants are big enough in the source and in the result to be told apart."""
    if min(size) < 64:
        return False
    if fit == "pad":
        return min(box[2] - box[0], box[3] - box[1]) >= 32
    a, b = size[0] / size[1], target[0] / target[1]
    return min(a / b, b / a) >= 0.5  # the crop keeps at least half of the long side


def assert_upright(means: list[float]) -> None:
    """Same ranking as the upright marks, with the levels still apart (grey, 16-bit stretched or dithered)."""
    order = sorted(range(4), key=lambda i: means[i])
    assert order == sorted(range(4), key=lambda i: LUMA[i]), (means, LUMA)
    ranked = sorted(means)
    assert min(b - a for a, b in zip(ranked, ranked[1:])) > 12, means  # noqa: RUF007


@given(upload=uploads(), fit=st.sampled_from(["crop", "pad"]), model=st.sampled_from(sorted(ADAPTERS)))
def test_every_upload_becomes_an_upright_image_of_exactly_the_models_size(upload, fit, model):
    fmt, mode, size, orientation = upload
    data = encode_upload(fmt, mode, size, orientation)
    upright = size  # drawn upright; the file stores it turned by the inverse of `orientation`
    target = ADAPTERS[model].target_size(*upright)
    try:
        prepared = images.prepare(data, ADAPTERS[model].target_size, fit)
    except JobError as exc:  # a valid upload under the pixel limit has no reason to fail
        pytest.fail(f"{fmt} {mode} {size} o={orientation}: {exc.code}: {exc.message}")
    out = g.decode(prepared.png)
    assert (prepared.width, prepared.height) == target == out.size and out.mode == "RGB"
    assert (prepared.source.width, prepared.source.height) == upright
    x0, y0, x1, y1 = prepared.content_box
    assert 0 <= x0 < x1 <= target[0] and 0 <= y0 < y1 <= target[1]
    if markers_resolvable(upright, target, fit, prepared.content_box):
        assert_upright(quadrant_means(out, prepared.content_box))


@given(data=st.binary(max_size=64), model=st.sampled_from(sorted(ADAPTERS)), fit=st.sampled_from(["crop", "pad"]))
def test_arbitrary_bytes_are_invalid_image_or_an_image(data, model, fit):
    try:
        images.prepare(data, ADAPTERS[model].target_size, fit)
    except JobError as exc:
        assert exc.code in ("invalid_image", "image_too_large") and not exc.retryable


# ---- the box arithmetic over the full range ---------------------------------------------------------

DRAFT_SCALES = st.sampled_from([1, 2, 4, 8])


@given(w=SIDE, h=SIDE, scale=DRAFT_SCALES, model=st.sampled_from(sorted(ADAPTERS)))
def test_the_crop_box_lies_inside_the_decoded_image_and_has_the_targets_aspect(w, h, scale, model):
    target = ADAPTERS[model].target_size(w, h)
    decoded = (math.ceil(w / scale), math.ceil(h / scale))  # what a draft decode at 1/scale gives
    region = (0.0, 0.0, w / scale, h / scale)
    x0, y0, x1, y1 = images.crop_box(region, target)
    assert 0 <= x0 < x1 <= decoded[0] and 0 <= y0 < y1 <= decoded[1]
    assert (x1 - x0) * target[1] == pytest.approx((y1 - y0) * target[0], rel=1e-9)
    assert (x0 + x1) / 2 == pytest.approx(w / scale / 2) and (y0 + y1) / 2 == pytest.approx(h / scale / 2)
    assert (x0, x1) == (0, w / scale) or (y0, y1) == (0, h / scale), "one side must be kept whole"


@given(w=SIDE, h=SIDE, model=st.sampled_from(sorted(ADAPTERS)))
def test_the_pad_layout_fills_one_side_and_keeps_the_aspect(w, h, model):
    tw, th = ADAPTERS[model].target_size(w, h)
    x, y, nw, nh = images.pad_layout((w, h), (tw, th))
    assert x >= 0 and y >= 0 and nw >= 1 and nh >= 1 and x + nw <= tw and y + nh <= th
    assert nw == tw or nh == th
    assert abs(x - (tw - x - nw)) <= 1 and abs(y - (th - y - nh)) <= 1, "centred"
    if nw == tw:
        assert abs(nh - h * tw / w) <= 0.5 or nh in (1, th)
    else:
        assert abs(nw - w * th / h) <= 0.5 or nw in (1, tw)
