"""Mutation fuzz of image preparation: valid JPEG/PNG/GIF/TIFF/WebP/BMP/HEIC files with bytes flipped,
cut, overwritten, duplicated or spliced from another file. Whatever the decoders make of them, the
answer is an image, invalid_image or image_too_large - never another exception (which the worker
would record as internal_error, a defect). A few examples under the `ci` profile, many under `fuzz`
(HYPOTHESIS_PROFILE=fuzz); the model's answer to finish_output is fuzzed the same way."""
from __future__ import annotations

import functools

import imagegen as g
from hypothesis import given, settings
from hypothesis import strategies as st

from img2img.core import images
from img2img.core.errors import JobError


def small_target(width: int, height: int) -> tuple[int, int]:
    return (64, 48) if width >= height else (48, 64)


TARGETS = {"small": small_target, **{name: a.target_size for name, a in g.adapters().items()}}


@functools.cache
def seeds() -> tuple[bytes, ...]:
    picture = g.quadrants((48, 32))
    files = [g.encode(picture, "JPEG", quality=80, exif=g.exif_bytes(6)), g.encode(picture, "PNG"),
             g.encode(picture.convert("RGBA"), "PNG"), g.animated("GIF", size=(24, 16)), g.encode(picture, "BMP"),
             g.encode(picture, "TIFF", exif=g.exif_bytes(8)), g.encode(picture, "TIFF", compression="tiff_lzw"),
             g.encode(picture.convert("L").convert("I").convert("I;16B"), "TIFF"),
             g.encode(picture, "WEBP", quality=80), g.animated("WEBP", size=(24, 16)),
             g.encode(picture, "JPEG", quality=80, progressive=True)]
    if g.has_heif():
        files.append(g.heic(picture))
    return tuple(files)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "overwrite", "truncate", "duplicate", "splice"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(chunk)] = chunk
        elif op == "truncate":
            del data[at:]
        elif op == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
        else:
            other = draw(st.sampled_from(seeds()))
            start = draw(st.integers(0, len(other) - 1))
            data[at:] = other[start:start + draw(st.integers(1, 512))] + data[at:]
    return bytes(data)


# max_pixels bounds the work a mutated header can ask for (a claimed 8000x8000 image is refused).
@settings(max_examples=settings().max_examples * 2)
@given(data=mutated(), target=st.sampled_from(sorted(TARGETS)), fit=st.sampled_from(["crop", "pad"]))
def test_mutated_uploads_are_an_image_or_a_permanent_image_error(data, target, fit):
    try:
        prepared = images.prepare(data, TARGETS[target], fit, max_pixels=1_000_000)
    except JobError as exc:
        assert exc.code in ("invalid_image", "image_too_large") and not exc.retryable, exc
        assert exc.message
        return
    assert g.decode(prepared.png).size == (prepared.width, prepared.height) == TARGETS[target](
        prepared.source.width, prepared.source.height)


@functools.cache
def prepared_and_answers():
    prepared = images.prepare(g.encode(g.quadrants((96, 64)), "PNG"), small_target, "pad")
    answer = g.decode(prepared.png)
    return prepared, (g.encode(answer, "PNG"), g.encode(answer, "JPEG", quality=80), g.encode(answer, "WEBP"))


@given(data=st.data(), fmt=st.sampled_from(["png", "jpeg", "webp"]), restore=st.booleans())
def test_mutated_model_answers_are_stored_or_a_transient_model_error(data, fmt, restore):
    prepared, answers = prepared_and_answers()
    answer = bytearray(data.draw(st.sampled_from(answers)))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(answer) - 1))
        if data.draw(st.booleans()):
            answer[at] ^= 1 << data.draw(st.integers(0, 7))
        else:
            del answer[at:]
    try:
        out = images.finish_output(bytes(answer), prepared, fmt, restore)
    except JobError as exc:
        assert (exc.code, exc.retryable) == ("model_error", True), exc
        return
    assert out.format == fmt and out.data
