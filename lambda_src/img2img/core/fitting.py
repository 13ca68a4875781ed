"""Fitting an input to an Image Service's own rule without cropping the user's composition.

`keep` (the default for edits): the picture as it is, downscaled when it has too many pixels or too long a
side; a picture the rule refuses (too small, too long and thin) is a clear `invalid_image` naming the
rule. `crop` / `pad`: the job asked to change the composition, so the aspect ratio is clamped into the
rule (cut or letterboxed by core/images.py) and a small picture is scaled up to the minimum.
Pure arithmetic on sizes: property-tested over all sizes (tests/unit/test_fitting_properties.py).
"""
from __future__ import annotations

import math

from ..operations import ImageRule
from .errors import JobError

FITS = ("keep", "crop", "pad")


def within(width: int, height: int, rule: ImageRule) -> bool:
    """Does a picture of this size satisfy the rule as it is?"""
    long_side, short_side = max(width, height), min(width, height)
    return (short_side >= rule.min_side and (rule.max_side is None or long_side <= rule.max_side)
            and rule.min_pixels <= width * height <= rule.max_pixels
            and long_side <= rule.max_aspect * short_side)


def fit_size(width: int, height: int, rule: ImageRule, fit: str = "keep") -> tuple[int, int]:
    """The size to send for an upright input of `width` x `height` (see the module docstring)."""
    aspect = width / height
    low, high = 1 / rule.max_aspect, rule.max_aspect
    if fit == "keep":
        if not low <= aspect <= high:
            raise _refused(width, height, rule, f"its aspect ratio {_ratio(aspect)} is outside 1:{rule.max_aspect:g} "
                           f"to {rule.max_aspect:g}:1")
        if min(width, height) < rule.min_side or width * height < rule.min_pixels:
            raise _refused(width, height, rule, "it is smaller than the service accepts")
    else:
        aspect = min(max(aspect, low), high)
    # Pixels to aim for: the input's own count, within the rule's bounds and its side limits.
    pixels = min(max(width * height, rule.min_pixels), rule.max_pixels)
    w, h = math.sqrt(pixels * aspect), math.sqrt(pixels / aspect)
    scale = 1.0
    if rule.max_side is not None:
        scale = min(scale, rule.max_side / max(w, h))
    scale = max(scale, rule.min_side / min(w, h))  # the minimum side wins over the pixel count's rounding
    return _rounded(w * scale, h * scale, rule)


def _rounded(w: float, h: float, rule: ImageRule) -> tuple[int, int]:
    """Whole pixels that still satisfy the rule: round, then nudge a side by one pixel where rounding
    broke a bound (too many or too few pixels, a side past its limit, an aspect just past the limit)."""
    tw, th = max(rule.min_side, round(w)), max(rule.min_side, round(h))
    if rule.max_side is not None:
        tw, th = min(tw, rule.max_side), min(th, rule.max_side)
    for _ in range(8):
        wide = tw >= th
        if tw * th > rule.max_pixels or max(tw, th) > rule.max_aspect * min(tw, th):
            # shrink the long side: fewer pixels, and a squarer picture
            tw, th = (tw - 1, th) if wide else (tw, th - 1)
        elif tw * th < rule.min_pixels:
            tw, th = (tw, th + 1) if wide else (tw + 1, th)  # grow the short side
        else:
            break
    return tw, th


def _ratio(aspect: float) -> str:
    return f"{aspect:.2f}:1" if aspect >= 1 else f"1:{1 / aspect:.2f}"


def _refused(width: int, height: int, rule: ImageRule, why: str) -> JobError:
    return JobError("invalid_image", f"the image is {width}x{height} pixels and {why}; this operation accepts "
                    f"{rule.text}. Send another image, or set fit to pad (letterbox) or crop (cut) to let the "
                    "pipeline change the composition", details={"size": [width, height], "rule": rule.text})
