"""Image preparation (core/images.py), the model's answer to the stored image (finish_output, restore_aspect)."""
from __future__ import annotations

import imagegen as g
import pytest
from imagegen import model_output, prepare
from PIL import Image

from img2img.core import images
from img2img.core.errors import JobError


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


def test_model_output_that_is_not_png_jpeg_or_webp_is_a_transient_model_error():
    prepared, _ = prepare(g.sample_bytes("rocket.jpg"))
    with pytest.raises(JobError) as info:
        images.finish_output(g.encode(g.solid(), "GIF"), prepared, "png", restore_aspect=False)
    assert info.value.retryable and info.value.code == "model_error"


# ---- the planned size, checkable before the model is paid -----------------------------------------

@pytest.mark.parametrize("size, fit, restore", [((900, 300), "crop", False), ((1206, 422), "crop", True),
                                                ((1206, 422), "pad", True), ((8000, 1), "crop", True),
                                                ((1, 8000), "pad", True), ((1000, 999), "crop", True)])
def test_planned_output_size_is_what_finish_output_stores(size, fit, restore):
    prepared, _ = prepare(g.encode(g.quadrants(size), "PNG"), fit=fit)
    planned = images.planned_output_size(prepared, restore)
    out = images.finish_output(model_output(prepared), prepared, "png", restore_aspect=restore)
    assert (out.width, out.height) == planned == g.decode(out.data).size


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_an_extreme_aspect_with_restore_aspect_is_refused_before_the_model_for_jpeg_and_webp(fmt):
    prepared, _ = prepare(g.encode(g.solid((8000, 1)), "PNG"), fit="crop")
    planned = images.planned_output_size(prepared, True)
    assert planned[0] > images.MAX_SIDE[fmt]
    with pytest.raises(JobError) as info:
        images.check_output_size(*planned, fmt)
    assert info.value.code == "invalid_parameters"
    images.check_output_size(*planned, "png")  # what the message tells the user to do works
    out = images.finish_output(model_output(prepared), prepared, "png", restore_aspect=True)
    assert (out.width, out.height) == planned


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
@pytest.mark.parametrize("size", [(3000, 1), (1, 8000)])
def test_finish_output_never_fails_on_a_size_check_output_size_accepts(size, fmt):
    prepared, _ = prepare(g.encode(g.solid(size), "PNG"), fit="crop")
    planned = images.planned_output_size(prepared, True)
    try:
        images.check_output_size(*planned, fmt)
    except JobError:
        return  # refused before the model: nothing to finish
    out = images.finish_output(model_output(prepared), prepared, fmt, restore_aspect=True)
    assert (out.width, out.height) == planned


def corrupt_model_answers(prepared):
    png = model_output(prepared)
    jpeg = model_output(prepared, "JPEG")
    yield png[:len(png) // 2]
    yield png[:40]
    yield png[:16] + b"\xff" * 13 + png[29:]
    yield jpeg[:200]
    yield jpeg[:2] + b"\xff" * 300
    yield b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 30


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_model_bytes_that_fail_to_decode_are_a_transient_model_error(fmt):
    prepared, _ = prepare(g.encode(g.solid((300, 200)), "PNG"))
    for data in corrupt_model_answers(prepared):
        try:
            images.finish_output(data, prepared, fmt, restore_aspect=True)
        except JobError as exc:
            assert (exc.code, exc.retryable) == ("model_error", True), exc
        else:
            pytest.fail(f"{data[:16]!r}... was stored")


def test_a_transparent_model_answer_is_flattened_over_white_for_jpeg():
    prepared, _ = prepare(g.encode(g.solid((64, 64)), "PNG"))
    data = g.encode(Image.new("RGBA", (1024, 1024), (0, 0, 0, 0)), "PNG")
    out = images.finish_output(data, prepared, "jpeg", restore_aspect=False)
    assert g.close(g.decode(out.data).getpixel((10, 10)), g.WHITE, 4)
