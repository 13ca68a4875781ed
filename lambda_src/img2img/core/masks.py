"""Masks for inpaint, erase and SDXL masking: any upload made into the 8-bit grey mask the model reads.

Polarity (docs/operations.md has the picture): white = edit at full strength, black = keep, grey =
partial, as the Stability services read it. `invert` is for tools that paint the other way. A mask of
another size is stretched to the image, then cut or letterboxed exactly as the image was (so it still
covers the same pixels); letterbox borders are black (kept). With no mask, the image's own alpha channel
is the mask: transparent = edit.
"""
from __future__ import annotations

import io

from PIL import Image, ImageOps

from .errors import JobError
from .images import PreparedImage, _untrusted, crop_box, open_image, pad_layout, png_bytes, to_rgb

EDIT, KEEP = 255, 0


def _grey(data: bytes, max_pixels: int, keep: int = KEEP) -> Image.Image:
    """Any mode or format as 8-bit grey, upright by its EXIF orientation, transparency read as `keep`
    (black; white for a mask painted the other way, so that mask_invert turns it into keep too)."""
    image = open_image(data, max_pixels)
    with _untrusted("the mask image is truncated or corrupt"):
        image.seek(0)
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            black = Image.new("RGB", rgba.size, (keep, keep, keep))
            black.paste(rgba, mask=rgba.getchannel("A"))
            return black.convert("L")
        if image.mode.startswith("I;16") or image.mode in ("I", "F"):
            return _wide_grey(image)
        return to_rgb(image).convert("L") if image.mode != "L" else image


def _wide_grey(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float mask on its own scale (65,535 or 1.0 = white). Not to_rgb's stretch of
    darkest..lightest, which turns an all-white mask black (refused: nothing to edit) and a half-grey
    (half-strength) mask into full strength."""
    as_float = image.convert("F")
    low, high = as_float.getextrema()
    if image.mode == "F":
        white = 1.0 if high <= 1.0 else 255.0  # 0..1 floats; else already on the 8-bit scale
    elif image.mode.startswith("I;16") or (255 < high <= 65_535 and low >= 0):
        white = 65_535.0
    elif low >= 0 and high <= 255:
        white = 255.0
    else:
        return to_rgb(image).convert("L")  # a signed 32-bit mask has no natural scale: darkest..lightest
    return as_float.point(lambda v: v * (255.0 / white)).convert("L")


def fitted(mask: Image.Image, prepared: PreparedImage) -> Image.Image:
    """The mask over exactly the pixels of the prepared image (see the module docstring)."""
    source = (prepared.source.width, prepared.source.height)
    if mask.size != source:
        mask = mask.resize(source, Image.Resampling.BILINEAR)
    target = (prepared.width, prepared.height)
    if prepared.fit == "crop":
        box = crop_box((0.0, 0.0, float(source[0]), float(source[1])), target)
        return mask.resize(target, Image.Resampling.BILINEAR, box=box)
    if prepared.fit == "pad":
        x, y, nw, nh = pad_layout(source, target)
        canvas = Image.new("L", target, KEEP)
        canvas.paste(mask.resize((nw, nh), Image.Resampling.BILINEAR), (x, y))
        return canvas
    return mask.resize(target, Image.Resampling.BILINEAR)


def prepare_mask(data: bytes, prepared: PreparedImage, invert: bool = False,
                 max_pixels: int = 40_000_000, edit_is_white: bool = True) -> bytes:
    """A mask upload as the PNG the model reads, at the prepared image's size.

    `edit_is_white=False` is for a model told that black pixels are the ones to replace (SDXL's
    MASK_IMAGE_BLACK): the file is read in that polarity, fitted and checked as white = edit (so letterbox
    borders and transparent parts still keep), and handed back in the model's polarity."""
    # Inverted before fitting: inverting after it turned the letterbox borders (black = keep) white, so
    # a padded job with mask_invert edited (repainted) the borders.
    flip = invert != (not edit_is_white)  # does the file's black mean edit?
    mask = _grey(data, max_pixels, EDIT if flip else KEEP)
    if flip:
        mask = ImageOps.invert(mask)
    mask = fitted(mask, prepared)
    what = "the mask" + (" (inverted by mask_invert)" if invert else "")
    _check_edits_something(mask, what if edit_is_white else f"{what}, read as black = edit")
    return png_bytes(mask if edit_is_white else ImageOps.invert(mask))


def mask_from_alpha(prepared: PreparedImage, invert: bool = False) -> bytes:
    """The image's own alpha channel as the mask: transparent = edit."""
    if prepared.alpha is None:
        raise JobError("invalid_image", "this operation needs a mask and none was found: upload one next to the "
                       "image (<image key>.mask.png or <stem>.mask.png; white = edit, black = keep), name one "
                       "with the mask parameter, or give the image an alpha channel (transparent = edit)")
    with Image.open(io.BytesIO(prepared.alpha)) as alpha:
        mask = ImageOps.invert(alpha.convert("L"))
    if invert:
        mask = ImageOps.invert(mask)
    _check_edits_something(mask, "the image's alpha channel (used as the mask: transparent = edit)")
    return png_bytes(mask)


def _check_edits_something(mask: Image.Image, what: str) -> None:
    """A mask that is black everywhere asks the model to change nothing: refused before it is paid."""
    if mask.getextrema()[1] == KEEP:
        raise JobError("invalid_image", f"{what} is black everywhere, so there is nothing to edit (white = edit, "
                       "black = keep); set mask_invert: true if your tool paints the other way")


def coverage(mask_png: bytes, edit_is_white: bool = True) -> float:
    """The share of the picture a mask edits (0..1): shown in the record."""
    with Image.open(io.BytesIO(mask_png)) as mask:
        grey = mask.convert("L")
        histogram = grey.histogram() if edit_is_white else grey.histogram()[::-1]
    total = sum(histogram) or 1
    return round(sum(level * count for level, count in enumerate(histogram)) / (255 * total), 4)

