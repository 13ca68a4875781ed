"""Image preparation (core/images.py), EXIF orientation applied exactly once, whatever the format."""
from __future__ import annotations

import io

import imagegen as g
import pytest
from imagegen import at, prepare, sdxl_size
from PIL import Image

from img2img.core import images


def test_exif_orientation_6_turns_a_landscape_raw_into_a_portrait():
    # Raw 400x200: TL red, TR green, BL blue, BR yellow. Orientation 6 = rotate 90 degrees clockwise.
    data = g.exif_jpeg(g.quadrants((400, 200)), 6)
    prepared, out = prepare(data)
    assert (prepared.source.width, prepared.source.height) == (200, 400)
    assert prepared.source.orientation == 6
    assert out.size == sdxl_size(200, 400) == (768, 1344)
    assert g.close(at(out, 0.25, 0.25), g.BLUE, 40)
    assert g.close(at(out, 0.75, 0.25), g.RED, 40)
    assert g.close(at(out, 0.25, 0.75), g.YELLOW, 40)
    assert g.close(at(out, 0.75, 0.75), g.GREEN, 40)


def test_exif_orientation_3_turns_the_image_upside_down():
    data = g.exif_jpeg(g.quadrants((400, 300)), 3)
    _, out = prepare(data)
    assert g.close(at(out, 0.25, 0.25), g.YELLOW, 40)
    assert g.close(at(out, 0.75, 0.75), g.RED, 40)


def test_large_rotated_jpeg_uses_the_rotated_target():
    data = g.exif_jpeg(g.textured((2000, 1500)), 6, quality=80)
    prepared, out = prepare(data)
    assert (prepared.source.width, prepared.source.height) == (1500, 2000)
    assert out.size == (896, 1152)


# ---- orientation per format, applied exactly once -------------------------------------------------

EXIF_FORMATS = ["JPEG", "PNG", "WEBP", "TIFF", "AVIF"] + (["HEIF"] if g.has_heif() else [])
OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}, "AVIF": {"quality": 90, "speed": 10},
           "HEIF": {"quality": 90}}


def oriented_file(fmt: str, orientation: int, size=(120, 80)) -> bytes:
    """A file whose upright picture is g.quadrants(size), stored turned and tagged with `orientation`."""
    stored = g.stored_for(g.quadrants(size), orientation)
    return g.encode(stored, fmt, exif=g.exif_bytes(orientation), **OPTIONS.get(fmt, {}))


@pytest.mark.parametrize("fmt", EXIF_FORMATS)
def test_the_table_of_formats_pillow_turns_upright_matches_pillow(fmt):
    # Orientation 6 on a 120x80 upright picture: stored 80x120. A plugin that turns it upright itself
    # reports 120x80 and the upright top-left colour after load; the others give the stored pixels.
    image = Image.open(io.BytesIO(oriented_file(fmt, 6)))
    image.load()
    pillow_turns_it = image.size == (120, 80) and g.close(image.getpixel((5, 5)), g.RED, 40)
    assert pillow_turns_it == (image.format in images.UPRIGHT_ON_LOAD), (image.format, image.size)


# All 8 where we apply the orientation (JPEG) and where Pillow does (TIFF); a swap and a flip elsewhere.
CASES = [(fmt, o) for fmt in ("JPEG", "TIFF") for o in range(1, 9)] + [
    (fmt, o) for fmt in EXIF_FORMATS if fmt not in ("JPEG", "TIFF") for o in (3, 5, 6)]


@pytest.mark.parametrize("fmt, orientation", CASES)
def test_every_orientation_in_every_format_comes_out_upright_once(fmt, orientation):
    prepared, out = prepare(oriented_file(fmt, orientation), fit="pad")
    assert (prepared.source.width, prepared.source.height) == (120, 80)
    assert out.size == sdxl_size(120, 80)
    x0, y0, x1, y1 = prepared.content_box
    w, h = x1 - x0, y1 - y0
    for (fx, fy), color in zip([(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)],
                               [g.RED, g.GREEN, g.BLUE, g.YELLOW]):
        assert g.close(out.getpixel((x0 + int(w * fx), y0 + int(h * fy))), color, 40), (fmt, orientation, fx, fy)


def test_tiff_reports_the_files_orientation_though_pillow_applied_it():
    prepared, _ = prepare(oriented_file("TIFF", 6))
    assert prepared.source.orientation == 6 and prepared.source.format == "tiff"


def test_compressed_tiff_through_libtiff_is_turned_once_too():
    stored = g.stored_for(g.quadrants((120, 80)), 8)
    data = g.encode(stored, "TIFF", exif=g.exif_bytes(8), compression="tiff_lzw")
    _, out = prepare(data)
    assert g.close(at(out, 0.25, 0.25), g.RED, 30) and g.close(at(out, 0.75, 0.75), g.YELLOW, 30)


def test_a_broken_exif_block_is_read_as_no_orientation():
    data = g.encode(g.quadrants((120, 80)), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    prepared, out = prepare(data)
    assert prepared.source.orientation == 1 and g.close(at(out, 0.25, 0.25), g.RED, 30)
