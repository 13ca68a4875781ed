"""The fitting rules of the Image Services over every image size (1..30,000 px a side).

What a user relies on: the size sent always satisfies the service's rule, or (keep only) the job fails with
an `invalid_image` that names the rule; keep never distorts, never upscales and never touches an image the
rule already accepts; crop and pad always find a size.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from img2img.core import fitting
from img2img.core.errors import JobError
from img2img.operations import SERVICES

SIDE = st.integers(1, 30_000)
OPERATIONS = pytest.mark.parametrize("operation", SERVICES, ids=[op.name for op in SERVICES])


def same_aspect_within_a_pixel(width: int, height: int, tw: int, th: int) -> bool:
    """Is there one scale s with |tw - s*width| <= 1 and |th - s*height| <= 1 (rounding, nothing more)?"""
    return max((tw - 1) / width, (th - 1) / height) <= min((tw + 1) / width, (th + 1) / height)


@OPERATIONS
@pytest.mark.parametrize("fit", fitting.FITS)
@given(width=SIDE, height=SIDE)
@example(width=1, height=1)
@example(width=30_000, height=30_000)
@example(width=1, height=30_000)
@example(width=30_000, height=1)
@example(width=64, height=160)      # exactly 1:2.5
@example(width=64, height=161)      # just past it
@example(width=3072, height=3072)   # exactly 9,437,184 pixels
@example(width=3073, height=3072)
@example(width=1024, height=1024)   # exactly 1 MP
@example(width=1536, height=32)     # fast upscale's extreme corner
@example(width=1537, height=32)
def test_the_size_sent_satisfies_the_rule_or_keep_refuses_naming_it(operation, fit, width, height):
    rule = operation.rule
    try:
        tw, th = fitting.fit_size(width, height, rule, fit)
    except JobError as exc:
        assert fit == "keep", f"{fit} must always find a size"
        assert exc.code == "invalid_image" and not exc.retryable
        assert rule.text in exc.message and f"{width}x{height}" in exc.message
        assert not fitting.within(width, height, rule)  # an image the rule accepts is never refused
        return
    assert fitting.within(tw, th, rule), (tw, th, rule.text)


@OPERATIONS
@given(width=SIDE, height=SIDE)
@example(width=3073, height=3072)
@example(width=1000, height=2048)
@example(width=7680, height=5000)
def test_keep_never_distorts_and_never_upscales(operation, width, height):
    try:
        tw, th = fitting.fit_size(width, height, operation.rule, "keep")
    except JobError:
        return
    assert tw <= width and th <= height, "keep upscaled"
    assert same_aspect_within_a_pixel(width, height, tw, th), (width, height, tw, th)


@OPERATIONS
@given(width=SIDE, height=SIDE)
def test_keep_leaves_an_image_the_rule_accepts_as_it_is(operation, width, height):
    if not fitting.within(width, height, operation.rule):
        return
    assert fitting.fit_size(width, height, operation.rule, "keep") == (width, height)


@OPERATIONS
@given(data=st.data())
def test_keep_leaves_accepted_sizes_alone_drawn_from_inside_the_rule(operation, data):
    """The test above rarely draws an accepted size for the 1 MP rules: draw from inside the rule."""
    rule = operation.rule
    short = data.draw(st.integers(rule.min_side, min(rule.max_side or 30_000, math.isqrt(rule.max_pixels))),
                      label="short")
    long_side = data.draw(st.integers(short, min(int(short * rule.max_aspect), rule.max_side or 30_000,
                                                 rule.max_pixels // short)), label="long")
    if short * long_side < rule.min_pixels:
        return
    for width, height in ((long_side, short), (short, long_side)):
        assert fitting.within(width, height, rule)
        assert fitting.fit_size(width, height, rule, "keep") == (width, height)


def test_a_too_long_image_is_refused_by_keep_with_the_rule_and_the_way_out():
    rule = SERVICES[3].rule  # inpaint: the standard edit rule
    with pytest.raises(JobError) as caught:
        fitting.fit_size(3000, 1000, rule, "keep")
    message = caught.value.message
    assert "3000x1000" in message and "3.00:1" in message and "2.5:1" in message
    assert "fit to pad" in message and "crop" in message
