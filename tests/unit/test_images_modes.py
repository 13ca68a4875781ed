"""Image preparation (core/images.py), every colour mode Pillow opens becomes 8-bit RGB, alpha over white."""
from __future__ import annotations

import struct

import imagegen as g
import pytest
from imagegen import at, palette, prepare
from PIL import Image

from img2img.core import images


def test_palette_image_without_transparency():
    image = Image.new("P", (64, 64), 1)
    image.putpalette(palette([g.RED, g.GREEN]))
    _, out = prepare(g.encode(image, "PNG"))
    assert g.close(at(out, 0.5, 0.5), g.GREEN, 2)


def test_palette_image_with_transparency_is_composited_on_white():
    image = Image.new("P", (64, 64), 0)
    image.putpalette(palette([g.RED, g.GREEN]))
    image.paste(1, (32, 0, 64, 64))  # right half green, left half transparent red
    prepared, out = prepare(g.encode(image, "PNG", transparency=0))
    assert prepared.source.mode == "P"
    assert g.close(at(out, 0.1, 0.5), g.WHITE, 2)
    assert g.close(at(out, 0.9, 0.5), g.GREEN, 2)


def test_gif_with_a_transparent_index():
    image = Image.new("P", (64, 64), 0)
    image.putpalette(palette([g.BLUE, g.YELLOW]))
    image.paste(1, (0, 0, 64, 32))
    _, out = prepare(g.encode(image, "GIF", transparency=0))
    assert g.close(at(out, 0.5, 0.1), g.YELLOW, 2)
    assert g.close(at(out, 0.5, 0.9), g.WHITE, 2)


def test_la_image_alpha_over_white():
    image = Image.new("LA", (64, 64), (0, 255))
    image.paste((0, 0), (0, 0, 32, 64))  # left half fully transparent black
    _, out = prepare(g.encode(image, "PNG"))
    assert g.close(at(out, 0.1, 0.5), g.WHITE, 2)
    assert g.close(at(out, 0.9, 0.5), g.BLACK, 2)


def test_rgba_alpha_is_composited_on_white():
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))        # transparent red -> white
    image.paste((0, 0, 255, 255), (32, 0, 64, 32))             # opaque blue
    image.paste((0, 0, 0, 128), (32, 32, 64, 64))              # half-transparent black -> mid grey
    _, out = prepare(g.encode(image, "PNG"))
    assert g.close(at(out, 0.1, 0.5), g.WHITE, 2)
    assert g.close(at(out, 0.9, 0.1), g.BLUE, 2)
    assert g.close(at(out, 0.9, 0.9), (127, 127, 127), 3)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_rgb(fmt):
    image = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # red
    prepared, out = prepare(g.encode(image, fmt))
    assert prepared.source.mode == "CMYK" and out.mode == "RGB"
    assert g.close(at(out, 0.5, 0.5), g.RED, 20)


def test_16_bit_png_gradient_survives_as_a_gradient():
    data = g.encode(g.gradient_16bit((256, 64)), "PNG")
    prepared, out = prepare(data, fit="pad")
    assert prepared.source.mode.startswith("I;16")
    x0, y0, x1, y1 = prepared.content_box
    row = [out.getpixel((x, (y0 + y1) // 2))[0] for x in range(x0 + 2, x1 - 2, 16)]
    assert row == sorted(row), "gradient is not monotonic"
    assert row[0] < 20 and row[-1] > 235, row
    assert len(set(row)) > len(row) * 0.8, "gradient collapsed (clipped)"


def test_16_bit_png_with_a_narrow_high_range_is_stretched_not_clipped():
    row = [40000] * 32 + [60000] * 32
    image = Image.frombytes("I;16", (64, 64), struct.pack("<4096H", *(row * 64)))
    assert image.getextrema() == (40000, 60000)
    _, out = prepare(g.encode(image, "PNG"))
    left, right = at(out, 0.1, 0.5)[0], at(out, 0.9, 0.5)[0]
    assert left < 128 < right, (left, right)


def test_32_bit_integer_tiff():
    image = Image.new("I", (256, 64))
    image.putdata([x * 1000 for x in range(256)] * 64)
    prepared, out = prepare(g.encode(image, "TIFF"), fit="pad")
    assert prepared.source.mode == "I"
    x0, y0, x1, y1 = prepared.content_box
    assert out.getpixel((x0 + 1, (y0 + y1) // 2))[0] < 10
    assert out.getpixel((x1 - 2, (y0 + y1) // 2))[0] > 245


def test_float_tiff():
    image = Image.new("F", (256, 64))
    image.putdata([x / 255.0 for x in range(256)] * 64)
    prepared, out = prepare(g.encode(image, "TIFF"), fit="pad")
    assert prepared.source.mode == "F"
    x0, y0, x1, y1 = prepared.content_box
    mid = (y0 + y1) // 2
    assert out.getpixel((x0 + 1, mid))[0] < 10 < out.getpixel(((x0 + x1) // 2, mid))[0] < 245
    assert out.getpixel((x1 - 2, mid))[0] > 245


def test_one_bit_image():
    image = Image.new("1", (64, 64), 0)
    image.paste(1, (0, 0, 32, 64))
    _, out = prepare(g.encode(image, "PNG"))
    assert g.close(at(out, 0.1, 0.5), g.WHITE, 2) and g.close(at(out, 0.9, 0.5), g.BLACK, 2)


def test_grayscale_image():
    image = Image.new("L", (64, 64), 200)
    prepared, out = prepare(g.encode(image, "PNG"))
    assert prepared.source.mode == "L" and out.mode == "RGB"
    assert g.close(at(out, 0.5, 0.5), (200, 200, 200), 2)


# ---- every mode Pillow opens ----------------------------------------------------------------------

# (mode, format): each mode in a format that stores it. The colour must survive (grey modes: its luma).
STORED_MODES = [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("PA", "TIFF"), ("RGB", "PNG"),
                ("RGBA", "PNG"), ("CMYK", "TIFF"), ("YCbCr", "TIFF"), ("LAB", "TIFF"), ("I", "TIFF"),
                ("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF"), ("I;16L", "TIFF"), ("F", "TIFF"),
                ("L", "JPEG"), ("CMYK", "JPEG"), ("P", "GIF"), ("P", "BMP"), ("RGBA", "WEBP")]


@pytest.mark.parametrize("mode, fmt", STORED_MODES)
def test_every_mode_pillow_opens_becomes_rgb_with_its_picture(mode, fmt):
    source = g.in_mode(g.stripes((96, 64), (g.BLUE, g.RED, g.YELLOW)), mode)
    data = g.encode(source, fmt)
    prepared, out = prepare(data, fit="pad")
    assert out.mode == "RGB" and out.size == (prepared.width, prepared.height)
    x0, y0, x1, y1 = prepared.content_box
    row = [out.getpixel((x0 + int((x1 - x0) * f), (y0 + y1) // 2)) for f in (1 / 6, 3 / 6, 5 / 6)]
    lumas = [round(0.299 * r + 0.587 * gg + 0.114 * b) for r, gg, b in row]
    assert lumas == sorted(lumas) and lumas[2] - lumas[0] > 100, (mode, fmt, row)
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "P", "PA"):
        assert all(g.close(p, c, 40) for p, c in zip(row, (g.BLUE, g.RED, g.YELLOW))), row


def test_16_bit_big_endian_grey_tiff_from_a_scanner():
    image = g.gradient_16bit((256, 64)).convert("I").convert("I;16B")
    data = g.encode(image, "TIFF")
    prepared, out = prepare(data, fit="pad")
    assert prepared.source.mode == "I;16B"
    x0, y0, x1, y1 = prepared.content_box
    row = [out.getpixel((x, (y0 + y1) // 2))[0] for x in range(x0 + 2, x1 - 2, 16)]
    assert row == sorted(row) and row[0] < 20 and row[-1] > 235, row


@pytest.mark.parametrize("mode", ["HSV", "LAB", "YCbCr", "I;16B", "I;16L", "I;16N", "RGBa", "RGBX", "PA"])
def test_to_rgb_converts_modes_colorimetrically(mode):
    rgb = g.stripes((30, 4), (g.RED, g.GREEN, g.BLUE))
    out = images.to_rgb(g.in_mode(rgb, mode))
    assert out.mode == "RGB" and out.size == rgb.size
    if not mode.startswith("I;16"):
        for x, color in ((5, g.RED), (15, g.GREEN), (25, g.BLUE)):
            # 8-bit LAB quantises a*/b*: sRGB's pure green and blue come back within ~25
            assert g.close(out.getpixel((x, 2)), color, 25 if mode == "LAB" else 6), (mode, out.getpixel((x, 2)))


def test_float_image_with_inf_and_nan_becomes_rgb():
    image = Image.new("F", (64, 64), 0.5)
    image.putpixel((0, 0), float("inf"))
    image.putpixel((1, 0), float("nan"))
    image.putpixel((2, 0), float("-inf"))
    prepared, out = prepare(g.encode(image, "TIFF"))
    assert out.mode == "RGB" and out.size == (prepared.width, prepared.height)
