"""Image preparation (core/images.py), the pixel limit of uploads and the per-side limits of the output formats."""
from __future__ import annotations

import imagegen as g
import pytest
from imagegen import prepare
from PIL import Image

from img2img.core import images
from img2img.core.errors import JobError


@pytest.mark.parametrize("size, max_pixels", [((20000, 20000), 40_000_000), ((7000, 7000), 40_000_000),
                                              ((4096, 1100), 4_000_000)])
def test_decompression_bomb_is_refused_before_decoding(size, max_pixels):
    # The pixel data is missing: decoding would answer invalid_image. image_too_large proves the order.
    with pytest.raises(JobError) as info:
        prepare(g.png_header_only(*size), max_pixels=max_pixels)
    assert info.value.code == "image_too_large"
    assert f"{max_pixels:,}" in info.value.message


@pytest.mark.parametrize("size", [(3000, 3000), (2100, 2000)])
def test_large_but_cheap_image_over_a_small_limit(size):
    data = g.encode(Image.new("RGB", size, g.BLUE), "PNG")
    assert len(data) < 200_000
    with pytest.raises(JobError) as info:
        prepare(data, max_pixels=4_000_000)
    assert info.value.code == "image_too_large"


def test_image_at_the_limit_is_accepted():
    data = g.encode(Image.new("RGB", (2000, 2000), g.BLUE), "PNG")
    prepared, _ = prepare(data, max_pixels=4_000_000)
    assert prepared.width == 1024


def test_the_pixel_limit_does_not_stick_to_later_calls():
    with pytest.raises(JobError):
        prepare(g.encode(Image.new("RGB", (300, 300)), "PNG"), max_pixels=4096 * 2)
    prepared, _ = prepare(g.encode(Image.new("RGB", (300, 300)), "PNG"), max_pixels=40_000_000)
    assert prepared.width == 1024


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_a_small_input_pixel_limit_does_not_reject_the_models_own_output(fmt):
    # IMG2IMG_MAX_INPUT_PIXELS may be as low as 4096; it limits uploads, not the ~1 MP model answer.
    prepared, _ = prepare(g.encode(g.solid((600, 400)), "PNG"), max_pixels=400_000)
    answer = g.encode(Image.new("RGB", (1216, 832), g.GREEN), "PNG")
    out = images.finish_output(answer, prepared, fmt, restore_aspect=False)
    assert (out.width, out.height) == (1216, 832)


# ---- the output formats' per-side limits: one table, as Pillow's encoders enforce them ---------------

@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
@pytest.mark.parametrize("horizontal", [True, False])
def test_max_side_is_exactly_what_the_encoder_accepts(fmt, horizontal):
    limit = images.MAX_SIDE[fmt]

    def size(n):
        return (n, 1) if horizontal else (1, n)

    g.encode(Image.new("RGB", size(limit)), fmt.upper())  # at the limit: written
    with pytest.raises((OSError, ValueError)):
        g.encode(Image.new("RGB", size(limit + 1)), fmt.upper())
    images.check_output_size(*size(limit), fmt)
    with pytest.raises(JobError) as info:
        images.check_output_size(*size(limit + 1), fmt)
    assert info.value.code == "invalid_parameters" and not info.value.retryable
    assert f"{limit:,}" in info.value.message and "png" in info.value.message
    assert "restore_aspect" in info.value.message


def test_png_takes_any_side_an_upload_can_produce():
    assert images.MAX_SIDE["png"] >= 40_000_000
    images.check_output_size(40_000_000, 1, "png")
    assert set(images.MAX_SIDE) == set(images.OUTPUT_FORMATS)


def test_an_unknown_output_format_is_invalid_parameters():
    with pytest.raises(JobError) as info:
        images.check_output_size(10, 10, "gif")
    assert info.value.code == "invalid_parameters" and "png, jpeg, webp" in info.value.message
