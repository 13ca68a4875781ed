"""Masks as the services read them (core/masks.py): white = edit, black = keep, whatever the upload.

Peers have shipped polarity bugs here, so every mode and format Pillow writes goes through the same
check: a mask whose left half is white must edit the left half of the prepared image, nothing else.
"""
from __future__ import annotations

import imagegen as g
import pytest
from PIL import Image

from img2img.core import fitting, images, masks
from img2img.core.errors import JobError
from img2img.operations import BY_NAME

RULE = BY_NAME["inpaint"].rule
MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F")
FORMATS = ("png", "jpeg", "webp")


def prepared(data: bytes, fit: str = "keep", alpha: bool = False) -> images.PreparedImage:
    return images.prepare(data, lambda w, h: fitting.fit_size(w, h, RULE, fit), fit, alpha=alpha)


def half_white(size=(200, 100)) -> Image.Image:
    """White (edit) on the left half, black (keep) on the right."""
    mask = Image.new("RGB", size, g.BLACK)
    mask.paste(g.WHITE, (0, 0, size[0] // 2, size[1]))
    return mask


def encoded(mode: str, fmt: str) -> bytes | None:
    """The half-white mask in `mode` as a `fmt` file, or None when Pillow cannot write that pair."""
    image = g.in_mode(half_white(), mode)
    try:
        return g.encode(image, fmt.upper(), **({"quality": 95} if fmt != "png" else {}))
    except (OSError, ValueError, KeyError):
        return None


# Every pair Pillow writes, plus TIFF for the wide modes no web format stores (I, F): Pillow writes those
# to WebP by clipping each value to 8 bits, so the file is no longer that mode's mask.
CASES = [(m, f) for m in MODES for f in FORMATS if encoded(m, f) is not None and not (m in ("I", "F") and f == "webp")]
CASES += [(m, "tiff") for m in ("I", "F")]


def grey(png: bytes) -> Image.Image:
    mask = g.decode(png)
    assert mask.mode == "L"
    return mask


@pytest.mark.parametrize("mode,fmt", CASES, ids=[f"{m}-{f}" for m, f in CASES])
def test_white_edits_and_black_keeps_in_every_mode_and_format(mode, fmt):
    image = prepared(g.encode(g.textured((200, 100)), "PNG"))
    data = encoded(mode, fmt) if fmt != "tiff" else g.encode(g.in_mode(half_white(), mode), "TIFF")

    mask = grey(masks.prepare_mask(data, image))

    assert mask.size == (image.width, image.height)
    assert mask.getpixel((20, 50)) >= 240, "white must edit"
    assert mask.getpixel((180, 50)) <= 15, "black must keep"


def test_the_web_formats_and_the_modes_are_all_covered():
    assert {f for _, f in CASES} >= set(FORMATS)
    assert {m for m, _ in CASES} == set(MODES)


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_a_wide_mask_keeps_its_own_scale(mode):
    """A 16-bit or float mask is read on its own scale (65,535 or 1.0 = white): an all-white mask edits
    everything and a half-grey one edits at half strength, not stretched to its own darkest..lightest."""
    full = 65_535 if mode == "I;16" else 1.0
    white = Image.new(mode, (200, 100), full)
    half = Image.new(mode, (200, 100), 0)
    half.paste(Image.new(mode, (100, 100), full / 2 if mode == "F" else full // 2), (0, 0))
    image = prepared(g.encode(g.textured((200, 100)), "PNG"))
    fmt = "PNG" if mode == "I;16" else "TIFF"

    assert grey(masks.prepare_mask(g.encode(white, fmt), image)).getextrema() == (255, 255)
    assert 120 <= grey(masks.prepare_mask(g.encode(half, fmt), image)).getpixel((20, 50)) <= 135


def test_mask_invert_is_for_tools_that_paint_the_other_way():
    image = prepared(g.encode(g.textured((200, 100)), "PNG"))
    mask = grey(masks.prepare_mask(g.encode(half_white(), "PNG"), image, invert=True))
    assert mask.getpixel((20, 50)) == 0 and mask.getpixel((180, 50)) == 255


def test_a_transparent_part_of_a_mask_upload_is_kept():
    upload = Image.new("RGBA", (200, 100), (255, 255, 255, 255))
    upload.paste((255, 255, 255, 0), (100, 0, 200, 100))  # white but transparent: not painted
    image = prepared(g.encode(g.textured((200, 100)), "PNG"))
    mask = grey(masks.prepare_mask(g.encode(upload, "PNG"), image))
    assert mask.getpixel((20, 50)) == 255 and mask.getpixel((180, 50)) == 0


def test_a_mask_of_another_size_is_stretched_over_the_image():
    image = prepared(g.encode(g.textured((400, 200)), "PNG"))
    mask = grey(masks.prepare_mask(g.encode(half_white((50, 50)), "PNG"), image))
    assert mask.size == (400, 200)
    assert mask.getpixel((150, 100)) >= 240 and mask.getpixel((250, 100)) <= 15


def test_crop_cuts_the_mask_exactly_like_the_image():
    """A 3:1 image cropped to 2.5:1 loses a twelfth of its width each side; the mask loses the same."""
    source = (300, 100)
    image = prepared(g.encode(g.textured(source), "PNG"), fit="crop")
    assert image.fit == "crop" and image.width / image.height == pytest.approx(2.5, abs=0.02)
    upload = Image.new("L", source, 0)
    upload.paste(255, (0, 0, 100, 100))  # the left third of the source
    mask = grey(masks.prepare_mask(g.encode(upload, "PNG"), image))
    # source x 100 of 300, after cutting 25 px on the left of a 250 px wide crop: 75/250 = 30 %
    assert mask.getpixel((round(image.width * 0.26), image.height // 2)) >= 240
    assert mask.getpixel((round(image.width * 0.34), image.height // 2)) <= 15


def test_pad_letterboxes_the_mask_with_black_borders_that_are_kept():
    image = prepared(g.encode(g.textured((300, 100)), "PNG"), fit="pad")
    x0, y0, x1, y1 = image.content_box
    assert y0 > 0  # letterboxed top and bottom
    mask = grey(masks.prepare_mask(g.encode(Image.new("L", (300, 100), 255), "PNG"), image))
    assert mask.getpixel((image.width // 2, 0)) == 0 and mask.getpixel((image.width // 2, image.height - 1)) == 0
    assert mask.getpixel((image.width // 2, (y0 + y1) // 2)) == 255
    assert masks.coverage(masks.png_bytes(mask)) == pytest.approx((y1 - y0) / image.height, abs=0.02)


def test_mask_invert_flips_the_mask_not_the_letterbox_borders():
    image = prepared(g.encode(g.textured((300, 100)), "PNG"), fit="pad")
    _, y0, _, y1 = image.content_box
    painted_black = Image.new("L", (300, 100), 0)  # "edit everything", by a tool that paints black = edit
    mask = grey(masks.prepare_mask(g.encode(painted_black, "PNG"), image, invert=True))
    assert mask.getpixel((image.width // 2, 0)) == 0, "the borders are not the picture: kept"
    assert mask.getpixel((image.width // 2, (y0 + y1) // 2)) == 255


def test_a_transparent_part_of_an_inverted_mask_is_kept_too():
    upload = Image.new("RGBA", (200, 100), (0, 0, 0, 255))  # black = edit, for mask_invert
    upload.paste((0, 0, 0, 0), (100, 0, 200, 100))  # not painted
    image = prepared(g.encode(g.textured((200, 100)), "PNG"))
    mask = grey(masks.prepare_mask(g.encode(upload, "PNG"), image, invert=True))
    assert mask.getpixel((20, 50)) == 255 and mask.getpixel((180, 50)) == 0


def test_with_no_mask_the_alpha_channel_is_the_mask_transparent_edits():
    photo = g.textured((200, 100)).convert("RGBA")
    photo.paste((0, 0, 0, 0), (0, 0, 100, 100))  # the left half cut out
    image = prepared(g.encode(photo, "PNG"), alpha=True)
    mask = grey(masks.mask_from_alpha(image))
    assert mask.getpixel((20, 50)) == 255 and mask.getpixel((180, 50)) == 0
    assert masks.coverage(masks.png_bytes(mask)) == pytest.approx(0.5, abs=0.01)
    inverted = grey(masks.mask_from_alpha(image, invert=True))
    assert inverted.getpixel((20, 50)) == 0 and inverted.getpixel((180, 50)) == 255


def test_no_mask_and_no_alpha_says_how_to_give_one():
    image = prepared(g.encode(g.textured((200, 100)), "JPEG"), alpha=True)
    with pytest.raises(JobError) as caught:
        masks.mask_from_alpha(image)
    error = caught.value
    assert error.code == "invalid_image" and not error.retryable
    assert "<image key>.mask.png" in error.message and "white = edit" in error.message
    assert "alpha channel" in error.message and "mask parameter" in error.message


def test_an_opaque_alpha_channel_edits_nothing_and_is_refused():
    image = prepared(g.encode(g.textured((200, 100)).convert("RGBA"), "PNG"), alpha=True)
    with pytest.raises(JobError) as caught:
        masks.mask_from_alpha(image)
    assert caught.value.code == "invalid_image"
    assert "alpha channel" in caught.value.message and "nothing to edit" in caught.value.message


@pytest.mark.parametrize("invert", [False, True])
def test_a_mask_that_edits_nothing_is_refused_before_the_model_is_paid(invert):
    image = prepared(g.encode(g.textured((200, 100)), "PNG"))
    upload = Image.new("L", (200, 100), 255 if invert else 0)
    with pytest.raises(JobError) as caught:
        masks.prepare_mask(g.encode(upload, "PNG"), image, invert=invert)
    message = caught.value.message
    assert caught.value.code == "invalid_image" and "black everywhere" in message and "mask_invert" in message
    assert ("inverted by mask_invert" in message) == invert


def test_coverage_is_the_share_edited():
    assert masks.coverage(masks.png_bytes(Image.new("L", (10, 10), 255))) == 1.0
    assert masks.coverage(masks.png_bytes(half_white().convert("L"))) == 0.5
    assert masks.coverage(masks.png_bytes(Image.new("L", (10, 10), 51))) == 0.2


def test_an_unreadable_mask_is_an_invalid_image():
    image = prepared(g.encode(g.textured((200, 100)), "PNG"))
    with pytest.raises(JobError) as caught:
        masks.prepare_mask(b"not an image", image)
    assert caught.value.code == "invalid_image"
