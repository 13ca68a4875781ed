"""Image preparation (core/images.py) on real photos and generated edge cases."""
from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path

import imagegen as g
import pytest
from PIL import Image, ImageOps, ImageStat, JpegImagePlugin

from img2img.core import images
from img2img.core.errors import JobError
from img2img.models.sd35 import SD35Adapter
from img2img.models.sdxl import SDXLAdapter

ADAPTERS = {"sdxl": SDXLAdapter(), "sd35": SD35Adapter()}
sdxl_size = SDXLAdapter().target_size


def prepare(data: bytes, adapter="sdxl", **kw) -> tuple[images.PreparedImage, Image.Image]:
    prepared = images.prepare(data, ADAPTERS[adapter].target_size, **kw)
    return prepared, g.decode(prepared.png)


def at(image: Image.Image, fx: float, fy: float):
    """The pixel at a fraction of the width and height."""
    return image.getpixel((min(image.width - 1, int(image.width * fx)), min(image.height - 1, int(image.height * fy))))


# ---- real photos ------------------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", ["sdxl", "sd35"])
@pytest.mark.parametrize("name", g.SAMPLE_NAMES)
def test_real_photos_become_model_sized_pngs_that_look_like_the_photo(name, adapter):
    data = g.sample_bytes(name)
    source = g.decode(data).convert("RGB")
    prepared, out = prepare(data, adapter)
    expected_size = ADAPTERS[adapter].target_size(*source.size)
    assert (prepared.width, prepared.height) == expected_size == out.size
    assert prepared.png.startswith(b"\x89PNG") and out.format == "PNG" and out.mode == "RGB"
    assert prepared.content_box == (0, 0, *expected_size)
    assert min(ImageStat.Stat(out).stddev) > 15, "prepared image is blank"
    reference = ImageOps.fit(source, expected_size, Image.Resampling.BILINEAR)
    assert g.mean_abs_diff(reference, out) < 8
    assert (prepared.source.width, prepared.source.height) == source.size
    assert prepared.source.format == ("jpeg" if name.endswith(".jpg") else "png")
    assert prepared.source.bytes == len(data)


def test_prepared_base64_is_the_png_without_data_prefix():
    prepared, _ = prepare(g.sample_bytes("chelsea.png"))
    assert prepared.base64.startswith("iVBORw0KGgo")
    import base64
    assert base64.b64decode(prepared.base64) == prepared.png


# ---- colour modes ---------------------------------------------------------------------------------

def palette(colors) -> list[int]:
    flat = [c for rgb in colors for c in rgb]
    return flat + [0] * (768 - len(flat))


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


# ---- EXIF orientation --------------------------------------------------------------------------------

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


# ---- frames --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_use_the_first_frame_and_count_frames(fmt):
    prepared, out = prepare(g.animated(fmt, colors=(g.RED, g.GREEN, g.BLUE, g.YELLOW)))
    assert prepared.source.frames == 4
    assert g.close(at(out, 0.5, 0.5), g.RED, 6)


# ---- broken input ---------------------------------------------------------------------------------

def test_truncated_jpeg_is_invalid_image():
    data = g.encode(g.textured((640, 480)), "JPEG", quality=90)
    with pytest.raises(JobError) as info:
        prepare(data[: len(data) // 2])
    assert info.value.code == "invalid_image" and not info.value.retryable
    assert "truncated" in info.value.message


@pytest.mark.parametrize("keep", [0.5, 0.9, 40])
def test_truncated_png_is_invalid_image(keep):
    data = g.encode(g.textured((320, 240)), "PNG")
    cut = int(len(data) * keep) if keep < 1 else keep
    with pytest.raises(JobError) as info:
        prepare(data[:cut])
    assert info.value.code == "invalid_image"


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty (0 bytes)"),
    (bytes(range(256)) * 8, "not an image"),
    (b"prompt: a cat in a spacesuit\n" * 20, "not an image"),
    (b'{"prompt": "a cat"}', "not an image"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "not an image"),
])
def test_non_images_are_invalid_image(data, fragment):
    with pytest.raises(JobError) as info:
        prepare(data)
    assert info.value.code == "invalid_image" and not info.value.retryable
    assert fragment in info.value.message


# ---- pixel limits ---------------------------------------------------------------------------------

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


# ---- formats ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, options", [("WEBP", {"lossless": True}), ("GIF", {}), ("BMP", {}), ("TIFF", {}),
                                          ("PNG", {}), ("JPEG", {"quality": 95})])
def test_common_formats_are_accepted(fmt, options):
    prepared, out = prepare(g.encode(g.quadrants((300, 200)), fmt, **options))
    assert prepared.source.format == fmt.lower()
    assert out.size == (1216, 832)
    assert g.close(at(out, 0.25, 0.25), g.RED, 30) and g.close(at(out, 0.75, 0.75), g.YELLOW, 30)


def test_heic_is_accepted():
    prepared, out = prepare(g.heic(g.quadrants((300, 200))))
    assert prepared.source.format in ("heif", "heic")
    assert out.size == (1216, 832)
    assert g.close(at(out, 0.25, 0.25), g.RED, 30) and g.close(at(out, 0.75, 0.25), g.GREEN, 30)


def test_heic_opener_is_registered_by_prepare_itself_in_a_fresh_process():
    code = (
        "import io, sys; sys.path[:0] = ['lambda_src', 'tests/unit']\n"
        "from PIL import Image; import pillow_heif\n"
        "buf = io.BytesIO(); pillow_heif.from_pillow(Image.new('RGB', (96, 64), (255, 0, 0))).save(buf, quality=90)\n"
        "from img2img.core import images; from img2img.models.sdxl import SDXLAdapter\n"
        "p = images.prepare(buf.getvalue(), SDXLAdapter().target_size)\n"
        "print(p.width, p.height, p.source.format)\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["1216", "832"]


# ---- fitting ------------------------------------------------------------------------------------

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


# ---- JPEG draft -----------------------------------------------------------------------------------

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


# ---- output ---------------------------------------------------------------------------------------

def model_output(prepared: images.PreparedImage, fmt="PNG") -> bytes:
    """What a model might answer: an image of the prepared size (here, the prepared image itself)."""
    return g.encode(g.decode(prepared.png), fmt)


def test_png_output_is_passed_through_byte_for_byte():
    prepared, _ = prepare(g.sample_bytes("coffee.png"))
    data = model_output(prepared)
    out = images.finish_output(data, prepared, "png", restore_aspect=False)
    assert out.data == data
    assert (out.format, out.content_type, out.width, out.height) == ("png", "image/png", 1216, 832)


@pytest.mark.parametrize("fmt, magic, content_type", [("jpeg", b"\xff\xd8", "image/jpeg"),
                                                      ("webp", b"RIFF", "image/webp")])
def test_conversion_to_jpeg_and_webp(fmt, magic, content_type):
    prepared, reference = prepare(g.sample_bytes("coffee.png"))
    out = images.finish_output(model_output(prepared), prepared, fmt, restore_aspect=False)
    assert out.data.startswith(magic) and out.content_type == content_type and out.format == fmt
    decoded = g.decode(out.data)
    assert decoded.size == (1216, 832)
    assert g.mean_abs_diff(reference, decoded) < 6


def test_jpeg_model_output_converted_to_png():
    prepared, reference = prepare(g.sample_bytes("astronaut.png"))
    out = images.finish_output(model_output(prepared, "JPEG"), prepared, "png", restore_aspect=False)
    assert out.data.startswith(b"\x89PNG") and out.format == "png"


def test_rgba_model_output_to_jpeg():
    prepared, _ = prepare(g.encode(g.solid((64, 64)), "PNG"))
    data = g.encode(Image.new("RGBA", (1024, 1024), (0, 255, 0, 255)), "PNG")
    out = images.finish_output(data, prepared, "jpeg", restore_aspect=False)
    assert g.close(g.decode(out.data).getpixel((10, 10)), g.GREEN, 6)


def test_restore_aspect_after_pad_cuts_the_borders_off():
    source = g.stripes((900, 300), (g.WHITE, g.GREEN, g.BLUE))
    prepared, _ = prepare(g.encode(source, "PNG"), fit="pad")
    out = images.finish_output(model_output(prepared), prepared, "png", restore_aspect=True)
    assert (out.width, out.height) == (1536, 512)
    image = g.decode(out.data)
    for y in (0, 511):
        assert g.close(image.getpixel((768, y)), g.GREEN, 6), "a border was left"


def test_restore_aspect_after_pad_scales_the_box_to_the_model_output_size():
    prepared, _ = prepare(g.encode(g.solid((900, 300), g.GREEN), "PNG"), fit="pad")
    half = g.encode(Image.new("RGB", (768, 320), g.GREEN), "PNG")
    out = images.finish_output(half, prepared, "png", restore_aspect=True)
    assert (out.width, out.height) == (768, 256)


@pytest.mark.parametrize("size", [(900, 300), (451, 300), (300, 900), (1000, 999)])
def test_restore_aspect_after_crop_rescales_to_the_input_aspect(size):
    prepared, _ = prepare(g.encode(g.textured(size), "PNG"), fit="crop")
    out = images.finish_output(model_output(prepared), prepared, "jpeg", restore_aspect=True)
    assert abs(out.width / out.height - size[0] / size[1]) < 0.01
    assert abs(out.width * out.height - prepared.width * prepared.height) < 0.02 * prepared.width * prepared.height
    assert g.decode(out.data).size == (out.width, out.height)


def test_model_bytes_that_are_not_an_image_are_a_retryable_model_error():
    prepared, _ = prepare(g.encode(g.solid(), "PNG"))
    with pytest.raises(JobError) as info:
        images.finish_output(b"GIF89a....", prepared, "png", restore_aspect=False)
    assert (info.value.code, info.value.retryable) == ("model_error", True)


def test_sniff_format():
    assert images.sniff_format(g.encode(g.solid(), "PNG")) == "png"
    assert images.sniff_format(g.encode(g.solid(), "JPEG")) == "jpeg"
    assert images.sniff_format(g.encode(g.solid(), "WEBP")) == "webp"
    assert images.sniff_format(g.encode(g.solid(), "GIF")) == "gif"
    assert images.sniff_format(g.encode(g.solid(), "TIFF")) == "tiff"
    assert images.sniff_format(b"") is None and images.sniff_format(b"hello world") is None


def test_model_output_that_is_not_png_jpeg_or_webp_is_a_transient_model_error():
    prepared, _ = prepare(g.sample_bytes("rocket.jpg"))
    with pytest.raises(JobError) as info:
        images.finish_output(g.encode(g.solid(), "GIF"), prepared, "png", restore_aspect=False)
    assert info.value.retryable and info.value.code == "model_error"


def test_prepare_does_not_depend_on_file_objects_being_left_open():
    data = g.sample_bytes("rocket.jpg")
    first, _ = prepare(data)
    second, _ = prepare(io.BytesIO(data).getvalue())
    assert first.png == second.png


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_a_small_input_pixel_limit_does_not_reject_the_models_own_output(fmt):
    # IMG2IMG_MAX_INPUT_PIXELS may be as low as 4096; it limits uploads, not the ~1 MP model answer.
    prepared, _ = prepare(g.encode(g.solid((600, 400)), "PNG"), max_pixels=400_000)
    answer = g.encode(Image.new("RGB", (1216, 832), g.GREEN), "PNG")
    out = images.finish_output(answer, prepared, fmt, restore_aspect=False)
    assert (out.width, out.height) == (1216, 832)
