"""Image preparation (core/images.py), which files are read (and which refused as invalid_image), real photos, frames."""  # noqa: E501
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import imagegen as g
import pytest
from imagegen import at, prepare
from PIL import Image, ImageOps, ImageStat

from img2img.core import images
from img2img.core.errors import JobError

ADAPTERS = g.adapters()


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


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_use_the_first_frame_and_count_frames(fmt):
    prepared, out = prepare(g.animated(fmt, colors=(g.RED, g.GREEN, g.BLUE, g.YELLOW)))
    assert prepared.source.frames == 4
    assert g.close(at(out, 0.5, 0.5), g.RED, 6)


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


def test_sniff_format():
    assert images.sniff_format(g.encode(g.solid(), "PNG")) == "png"
    assert images.sniff_format(g.encode(g.solid(), "JPEG")) == "jpeg"
    assert images.sniff_format(g.encode(g.solid(), "WEBP")) == "webp"
    assert images.sniff_format(g.encode(g.solid(), "GIF")) == "gif"
    assert images.sniff_format(g.encode(g.solid(), "TIFF")) == "tiff"
    assert images.sniff_format(b"") is None and images.sniff_format(b"hello world") is None


def test_prepare_does_not_depend_on_file_objects_being_left_open():
    data = g.sample_bytes("rocket.jpg")
    first, _ = prepare(data)
    second, _ = prepare(io.BytesIO(data).getvalue())
    assert first.png == second.png


# ---- whatever a decoder raises is invalid_image ----------------------------------------------------

def corrupt_variants():
    """Files that made Pillow raise something other than OSError (TypeError, IndexError, struct.error,
    KeyError, ...) in open, seek, load or the EXIF read: truncated and overwritten GIF/TIFF/PNG/WebP."""
    gif = g.animated("GIF")
    tiff = g.encode(g.quadrants((64, 48)), "TIFF", exif=g.exif_bytes(6))
    yield "gif-cut-header", gif[:13]
    yield "gif-zero-lzw", gif[:gif.index(b",") + 10] + b"\x00" * 40
    yield "tiff-no-ifd", tiff[:8]
    yield "tiff-ifd-garbage", tiff[:8] + b"\xff" * 64
    yield "tiff-bad-offset", tiff[:4] + b"\xff\xff\xff\x7f" + tiff[8:]
    yield "tiff-wrong-count", tiff[:10] + b"\xff\xff" + tiff[12:]
    png = g.encode(g.quadrants((64, 48)), "PNG")
    yield "png-bad-ihdr", png[:16] + b"\x00" * 13 + png[29:]
    webp = g.encode(g.quadrants((64, 48)), "WEBP")
    yield "webp-cut", webp[:30]


@pytest.mark.parametrize("name, data", list(corrupt_variants()), ids=lambda v: v if isinstance(v, str) else "")
def test_corrupt_files_are_invalid_image_whatever_the_decoder_raises(name, data):
    with pytest.raises(JobError) as info:
        prepare(data)
    assert info.value.code == "invalid_image" and not info.value.retryable
    assert info.value.message


@pytest.mark.parametrize("exc", [TypeError("x"), IndexError("x"), KeyError("x"), ZeroDivisionError("x"),
                                 RecursionError("x"), __import__("struct").error("x"), EOFError("x")])
@pytest.mark.parametrize("step", ["open", "load", "seek", "draft", "convert", "getexif"])
def test_any_exception_of_a_decode_step_is_invalid_image(monkeypatch, step, exc):
    # The class, not the cases: each decode step raising anything becomes invalid_image (EXIF: ignored).
    from PIL import ImageFile, JpegImagePlugin

    def boom(*args, **kwargs):
        raise exc

    target = {"open": (Image, "open"), "load": (ImageFile.ImageFile, "load"), "seek": (Image.Image, "seek"),
              "draft": (JpegImagePlugin.JpegImageFile, "draft"), "convert": (Image.Image, "convert"),
              "getexif": (Image.Image, "getexif")}[step]
    # CMYK, so that it is converted, and 8x the small target below, so that it is drafted
    data = g.encode(g.textured((512, 384)).convert("CMYK"), "JPEG", quality=70)
    monkeypatch.setattr(*target, boom)
    if step == "getexif":
        prepared = images.prepare(data, lambda w, h: (64, 48))
        assert prepared.source.orientation == 1
        return
    with pytest.raises(JobError) as info:
        images.prepare(data, lambda w, h: (64, 48))
    assert info.value.code == "invalid_image" and type(exc).__name__ in info.value.message


@pytest.mark.parametrize("exc", [MemoryError(), JobError("image_too_large", "ours")])
def test_memory_errors_and_our_own_job_errors_are_not_turned_into_invalid_image(monkeypatch, exc):
    from PIL import ImageFile

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)
    with pytest.raises(type(exc)) as info:
        prepare(g.encode(g.solid(), "PNG"))
    assert info.value is exc


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX", "EPS"])
def test_formats_outside_the_supported_list_are_refused_before_any_decoder_runs(fmt):
    data = g.encode(g.solid((32, 32)), fmt) if fmt != "EPS" else b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n"
    with pytest.raises(JobError) as info:
        prepare(data)
    assert info.value.code == "invalid_image" and "not an image in a supported format" in info.value.message
    assert "HEIC" in info.value.message


def test_mpo_phone_jpegs_are_read_and_drafted(monkeypatch):
    from PIL import JpegImagePlugin

    calls = []
    original = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: calls.append(size) or original(self, mode, size))
    first, second = g.textured((2400, 1800)), g.solid((2400, 1800), g.BLUE)
    data = g.encode(first, "MPO", save_all=True, append_images=[second], quality=85)
    prepared, out = prepare(data)
    assert prepared.source.format == "mpo" and prepared.source.frames == 2 and calls
    assert g.mean_abs_diff(ImageOps.fit(first, out.size, Image.Resampling.BILINEAR), out) < 8
