"""Image preparation (core/images.py), every upload size to exactly the model's size: crop and pad boxes, JPEG draft decoding."""  # noqa: E501
from __future__ import annotations

import imagegen as g
import pytest
from imagegen import at, prepare
from PIL import Image, ImageOps, JpegImagePlugin

from img2img.core import images


def test_pad_keeps_the_whole_image_with_borders():
    # 900x300 (3:1) -> SDXL 1536x640: scaled to 1536x512, 64 px bars top and bottom.
    source = g.stripes((900, 300), (g.WHITE, g.GREEN, g.BLUE))
    prepared, out = prepare(g.encode(source, "PNG"), fit="pad")
    assert out.size == (1536, 640)
    assert prepared.content_box == (0, 64, 1536, 576)
    assert prepared.fit == "pad"
    assert g.close(out.getpixel((768, 10)), images.PAD_COLOR, 2)
    assert g.close(out.getpixel((768, 630)), images.PAD_COLOR, 2)
    assert g.close(out.getpixel((3, 320)), g.WHITE, 4), "the left edge must be kept"
    assert g.close(out.getpixel((1532, 320)), g.BLUE, 4), "the right edge must be kept"
    assert g.close(out.getpixel((768, 70)), g.GREEN, 4)


def test_pad_of_a_tall_image_puts_bars_left_and_right():
    source = g.solid((300, 900), g.RED)
    prepared, out = prepare(g.encode(source, "PNG"), fit="pad")
    x0, y0, x1, y1 = prepared.content_box
    assert (y0, y1) == (0, out.height) and x0 > 0 and x1 < out.width
    assert g.close(out.getpixel((x0 // 2, 100)), images.PAD_COLOR, 2)
    assert g.close(out.getpixel(((x0 + x1) // 2, 100)), g.RED, 2)


def test_crop_is_centred_and_fills_the_canvas():
    # 900x300 -> 1536x640 by crop: 90 source px are cut from each side, top and bottom stay.
    source = g.stripes((900, 300), (g.RED, g.GREEN, g.BLUE))
    source.paste(g.WHITE, (0, 0, 60, 300))        # a left margin that must be cropped away
    source.paste(g.YELLOW, (840, 0, 900, 300))   # and a right one
    source.paste(g.BLACK, (440, 0, 460, 300))    # centre marker
    prepared, out = prepare(g.encode(source, "PNG"), fit="crop")
    assert prepared.content_box == (0, 0, 1536, 640)
    assert g.close(out.getpixel((2, 320)), g.RED, 6)
    assert g.close(out.getpixel((1533, 320)), g.BLUE, 6)
    assert g.close(out.getpixel((768, 0)), g.BLACK, 10) and g.close(out.getpixel((768, 639)), g.BLACK, 10)
    dark = [x for x in range(out.width) if sum(out.getpixel((x, 320))) < 60]
    assert abs((dark[0] + dark[-1]) / 2 - 768) <= 2


def test_large_jpeg_is_decoded_at_reduced_size_and_still_correct(monkeypatch):
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append((mode, size))
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    source = g.textured((4000, 3000))
    data = g.encode(source, "JPEG", quality=85)
    prepared, out = prepare(data)
    assert out.size == (1152, 896)
    assert calls, "draft() was not used for a large JPEG"
    mode, size = calls[0]
    assert size[0] >= 1152 and size[1] >= 864, "draft must not decode below the needed size"
    reference = ImageOps.fit(source, (1152, 896), Image.Resampling.BILINEAR)
    assert g.mean_abs_diff(reference, out) < 6


@pytest.mark.parametrize("mode, color", [("L", 90), ("CMYK", (0, 0, 255, 0))])
def test_large_grayscale_and_cmyk_jpegs(mode, color):
    data = g.encode(Image.new(mode, (2400, 1800), color), "JPEG", quality=80)
    prepared, out = prepare(data)
    assert out.size == (1152, 896) and out.mode == "RGB"
    expected = (90, 90, 90) if mode == "L" else g.YELLOW
    assert g.close(at(out, 0.5, 0.5), expected, 20)


# ---- every size: the crop box in float arithmetic fell outside the image for ~4% of sizes ----------

@pytest.mark.parametrize("fit", ["crop", "pad"])
@pytest.mark.parametrize("size, fmt, model", [((1000, 872), "JPEG", "sdxl"), ((2000, 1744), "JPEG", "sdxl"),
                                              ((1206, 422), "PNG", "sdxl"), ((1206, 422), "JPEG", "sd35"),
                                              ((1, 1), "PNG", "sd35"), ((8000, 1), "PNG", "sdxl"),
                                              ((1, 8000), "JPEG", "sd35")])
def test_sizes_that_crashed_prepare_now_give_the_models_size(size, fmt, model, fit):
    prepared, out = prepare(g.encode(g.quadrants(size), fmt), model, fit=fit)
    assert out.size == (prepared.width, prepared.height) == g.adapters()[model].target_size(*size)


@pytest.mark.parametrize("model", ["sdxl", "sd35"])
def test_the_crop_box_is_inside_the_image_for_every_width_at_the_heights_that_crashed(model):
    """A sweep, not a sample: all widths 1..8000 at the heights of the reported crashes (and extremes),
    whole images and 1/2, 1/4, 1/8 draft decodes."""
    target_size = g.adapters()[model].target_size
    bad = []
    for h in (1, 422, 872, 1744, 8000):
        for w in range(1, 8001):
            target = target_size(w, h)
            for scale in (1, 2, 4, 8):
                x0, y0, x1, y1 = images.crop_box((0.0, 0.0, w / scale, h / scale), target)
                if not (0 <= x0 < x1 <= -(-w // scale) and 0 <= y0 < y1 <= -(-h // scale)):
                    bad.append((w, h, scale, (x0, y0, x1, y1)))
    assert not bad, bad[:5]


@pytest.mark.parametrize("size", [(8000, 5000), (4001, 3001), (1001, 873)])
def test_draft_decoded_jpegs_keep_their_edges_in_the_decoded_coordinates(size):
    # A draft decode is ceil(size / scale): the box must be in its coordinates, so the pad fit still
    # shows the source's first and last columns (red left edge, blue right edge), not a shifted image.
    source = g.solid(size, g.GREEN)
    source.paste(g.RED, (0, 0, size[0] // 10, size[1]))
    source.paste(g.BLUE, (size[0] - size[0] // 10, 0, size[0], size[1]))
    prepared, out = prepare(g.encode(source, "JPEG", quality=90), fit="pad")
    assert out.size == (prepared.width, prepared.height)
    x0, y0, x1, y1 = prepared.content_box
    mid = (y0 + y1) // 2
    assert g.close(out.getpixel((x0 + 2, mid)), g.RED, 40)
    assert g.close(out.getpixel((x1 - 3, mid)), g.BLUE, 40)
    assert g.close(out.getpixel(((x0 + x1) // 2, mid)), g.GREEN, 40)


def test_pad_layout_and_crop_box_examples():
    assert images.pad_layout((900, 300), (1536, 640)) == (0, 64, 1536, 512)
    assert images.pad_layout((300, 900), (640, 1536)) == (64, 0, 512, 1536)
    assert images.pad_layout((8000, 1), (1536, 640)) == (0, 319, 1536, 1)
    assert images.crop_box((0.0, 0.0, 900.0, 300.0), (1536, 640)) == (90.0, 0.0, 810.0, 300.0)
