"""Mutation fuzz of image files: valid JPEG/PNG/GIF/TIFF/WebP/BMP/HEIC bytes with bytes flipped, cut off
or spliced together. Preparation must end in a prepared image or a permanent `invalid_image` /
`image_too_large`, never another exception (which would be recorded as a defect). Small budget in
`make test`, a large one in `make fuzz` (HYPOTHESIS_PROFILE=fuzz)."""
from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from img2img.core.errors import JobError
from img2img.core.images import prepare
from img2img.models.sd35 import SD35Adapter


def _seeds() -> dict[str, bytes]:
    card = Image.new("RGB", (96, 64), (30, 120, 200))
    card.paste((250, 200, 0), (0, 0, 48, 32))
    out = {}
    for fmt, image, options in (("JPEG", card, {"quality": 80}), ("PNG", card, {}), ("WEBP", card, {}),
                                ("BMP", card, {}), ("TIFF", card, {"compression": "tiff_lzw"}),
                                ("GIF", card.convert("P"), {"save_all": True,
                                                            "append_images": [card.convert("P").rotate(90)]})):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        out[fmt] = buffer.getvalue()
    try:
        from pillow_heif import from_pillow

        buffer = io.BytesIO()
        from_pillow(card).save(buffer, quality=50)
        out["HEIC"] = buffer.getvalue()
    except Exception:
        pass
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(("flip", "truncate", "splice", "insert")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
            start = draw(st.integers(0, len(other) - 1))
            data[at:at + draw(st.integers(1, 64))] = other[start:start + draw(st.integers(1, 256))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@given(data=mutated(), fit=st.sampled_from(("crop", "pad")))
def test_mutated_image_files_prepare_or_fail_as_invalid_image(data, fit):
    try:
        prepared = prepare(data, SD35Adapter().target_size, fit, 40_000_000)
    except JobError as exc:
        assert exc.code in ("invalid_image", "image_too_large") and not exc.retryable, exc
        return
    assert prepared.png.startswith(b"\x89PNG")
