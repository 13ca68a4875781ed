"""Classical stand-ins for the thirteen Stability Image Services (NOT generative models).

Each service gets a deterministic Pillow treatment that does visibly what the service promises, so a
pipeline can be checked offline on what users notice: upscales have the right size, masks edit where
they are white and keep where they are black, removed backgrounds are transparent, outpainting keeps
the original pixels, style transfer moves the colours. The prompt's colour words tint what is "made";
the seed varies the invented shapes, as in render.py.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageMath, ImageOps, ImageStat

from .render import PRESETS, Look, _edges, _soft, invent, make_look, sd35_size
from .validation import ServiceRequest

# Upscales other than Fast aim at about this many times each side (Bedrock's come back near 4K).
UPSCALE_SIDE = 4
# Masks and fills are worked out at about this size, then scaled back: they are smooth anyway.
WORK_SIDE = 256
# Mask values below this count as "keep" when a fill looks for known colours around a hole.
KNOWN_BELOW = 8
# How far a pixel's colour may be from the background's before it counts as foreground (0..255).
BACKGROUND_NEAR, BACKGROUND_FAR = 24, 64
# A style preset colours the treatment's "made" pixels this much.
PRESET_SHARE = 0.6


# --- building blocks -------------------------------------------------------------------------------------
def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _styled(image: Image.Image, request: ServiceRequest, look: Look) -> Image.Image:
    """The request's style preset over made pixels (the original pixels a service keeps stay untouched)."""
    if not request.style_preset:
        return image
    return Image.blend(image, PRESETS[request.style_preset](image, look), PRESET_SHARE)


def _tinted(image: Image.Image, look: Look) -> Image.Image:
    """The picture's light and shade in the prompt's colours: the tint at mid-grey."""
    dark = tuple(c // 4 for c in look.tint)
    light = tuple(255 - (255 - c) // 4 for c in look.tint)
    return ImageOps.colorize(image.convert("L"), black=dark, white=light, mid=look.tint)


def _dilate(mask: Image.Image, pixels: int) -> Image.Image:
    """Grow the white of a mask by `pixels` (grow_mask), at reduced size when the mask is large."""
    if pixels <= 0:
        return mask
    factor = max(1, math.ceil(max(mask.size) / 1024))
    small = mask.reduce(factor) if factor > 1 else mask
    for _ in range(max(1, round(pixels / factor))):
        small = small.filter(ImageFilter.MaxFilter(3))
    grown = small.resize(mask.size, Image.Resampling.BILINEAR) if factor > 1 else small
    return ImageChops.lighter(mask, grown)


def edit_mask(request: ServiceRequest, image: Image.Image) -> Image.Image:
    """White = edit, black = keep, grey = partial: the `mask` (resized to the image), else the image's alpha
    (transparent = edit); an image without alpha and no mask has nothing to edit. Then grow_mask."""
    if request.mask is not None:
        mask = request.mask.convert("L")
        if mask.size != image.size:
            mask = mask.resize(image.size, Image.Resampling.BILINEAR)
    elif "A" in image.getbands() or "transparency" in image.info:
        mask = ImageOps.invert(image.convert("RGBA").getchannel("A"))
    else:
        mask = Image.new("L", image.size, 0)
    return _dilate(mask, int(request.values.get("grow_mask") or 0))


def _divide(premultiplied: Image.Image, weight: Image.Image) -> Image.Image:
    """Colour = premultiplied colour / weight, per band (0 where the weight is 0)."""
    bands = [ImageMath.lambda_eval(lambda a: a["convert"](a["p"] * 255 / a["w"], "L"), p=band, w=weight)
             for band in premultiplied.split()]
    return Image.merge("RGB", bands)


def surroundings(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Fill the mask's white from the colours around it (push-pull: each hole pixel takes the average of
    the nearest known pixels at the coarsest scale that has any), at the image's size. Only pixels the mask
    keeps entirely are known: a half-erased pixel lends the fill none of its colour."""
    scale = min(1.0, WORK_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    keep = mask.point(lambda v: 255 if v < KNOWN_BELOW else 0).resize(size, Image.Resampling.BOX)
    colour = image.resize(size, Image.Resampling.BOX)
    if keep.getbbox() is None:  # everything is to be erased: nothing around it but the picture's average
        return Image.new("RGB", image.size, tuple(round(v) for v in ImageStat.Stat(colour).mean))
    levels = [(ImageChops.multiply(colour, Image.merge("RGB", (keep, keep, keep))), keep)]
    while max(levels[-1][1].size) > 1:
        premultiplied, weight = levels[-1]
        half = (max(1, math.ceil(weight.width / 2)), max(1, math.ceil(weight.height / 2)))
        levels.append((premultiplied.resize(half, Image.Resampling.BOX), weight.resize(half, Image.Resampling.BOX)))
    filled = _divide(*levels[-1])
    for premultiplied, weight in reversed(levels[:-1]):
        coarser = filled.resize(weight.size, Image.Resampling.BILINEAR)
        confident = weight.point(lambda v: min(255, v * 4))
        filled = Image.composite(_divide(premultiplied, weight), coarser, confident)
    return _soft(filled, 2).resize(image.size, Image.Resampling.BILINEAR)


def foreground(image: Image.Image) -> Image.Image:
    """Soft foreground alpha (L): distance from the background colour, estimated as the median of the
    border pixels; background-coloured areas not reached from the border (a white cup in a white room)
    stay opaque."""
    rgb = _rgb(image)
    width, height = rgb.size
    edge = max(1, min(width, height) // 64)
    frame = Image.new("RGB", (2 * (width + height) * edge, 1))
    strips = [rgb.crop((0, 0, width, edge)), rgb.crop((0, height - edge, width, height)),
              rgb.crop((0, 0, edge, height)).transpose(Image.Transpose.ROTATE_90),
              rgb.crop((width - edge, 0, width, height)).transpose(Image.Transpose.ROTATE_90)]
    x = 0
    for strip in strips:
        row = strip.resize((strip.width * strip.height, 1), Image.Resampling.NEAREST)
        frame.paste(row, (x, 0))
        x += row.width
    background = tuple(round(v) for v in ImageStat.Stat(frame.crop((0, 0, x, 1))).median)
    distance = ImageChops.difference(rgb, Image.new("RGB", rgb.size, background))
    red, green, blue = distance.split()
    nearest = ImageChops.lighter(red, ImageChops.lighter(green, blue))
    span = BACKGROUND_FAR - BACKGROUND_NEAR
    alpha = nearest.point(lambda v: 0 if v <= BACKGROUND_NEAR else min(255, (v - BACKGROUND_NEAR) * 255 // span))
    # Close small holes (noise in the subject) and soften the cut by a pixel.
    alpha = alpha.filter(ImageFilter.MaxFilter(3)).filter(ImageFilter.MinFilter(3)).filter(ImageFilter.SMOOTH)
    return ImageChops.lighter(alpha, _enclosed(alpha))


def _enclosed(alpha: Image.Image) -> Image.Image:
    """White where the alpha says "background" but no background path leads there from the border (found by
    a flood fill at reduced size, from a frame around the picture)."""
    scale = min(1.0, WORK_SIDE / max(alpha.size))
    small = alpha.resize((max(1, round(alpha.width * scale)), max(1, round(alpha.height * scale))),
                         Image.Resampling.BOX).point(lambda v: 255 if v < 128 else 0)
    framed = ImageOps.expand(small, border=1, fill=255)
    ImageDraw.floodfill(framed, (0, 0), 128)
    enclosed = framed.crop((1, 1, framed.width - 1, framed.height - 1)).point(lambda v: 255 if v == 255 else 0)
    return enclosed.resize(alpha.size, Image.Resampling.BILINEAR)


def found_region(request: ServiceRequest, image: Image.Image) -> Image.Image:
    """What "search" finds (white), deterministically: the part most unlike the border (the subject), or
    the centre when the picture has no clear subject; then grow_mask."""
    region = foreground(image)
    share = ImageStat.Stat(region).mean[0] / 255
    if not 0.01 < share < 0.95:
        region = Image.new("L", image.size, 0)
        width, height = image.size
        region.paste(255, (width // 4, height // 4, width - width // 4, height - height // 4))
        region = region.filter(ImageFilter.GaussianBlur(max(1, min(width, height) // 32)))
    return _dilate(region, int(request.values.get("grow_mask") or 0))


def _palette_map(image: Image.Image, palette_source: Image.Image) -> Image.Image:
    """Repaint `image`'s light and shade with the palette of `palette_source` (its colours sorted by
    brightness, dark pixels take its dark colours)."""
    quantized = palette_source.resize((64, 64), Image.Resampling.BOX).quantize(8, method=Image.Quantize.MEDIANCUT)
    flat = quantized.getpalette() or []
    counts = sorted(quantized.getcolors() or [], key=lambda item: item[1])
    colours = sorted((tuple(flat[3 * index:3 * index + 3]) for _, index in counts),
                     key=lambda c: 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])
    if len(colours) == 1:
        colours = colours * 2
    steps = len(colours) - 1
    luts: list[list[int]] = [[], [], []]
    for v in range(256):
        position = v / 255 * steps
        low = min(steps - 1, int(position))
        t = position - low
        for band in range(3):
            luts[band].append(round(colours[low][band] * (1 - t) + colours[low + 1][band] * t))
    grey = ImageOps.autocontrast(image.convert("L"), cutoff=1)
    return Image.merge("RGB", [grey.point(lut) for lut in luts])


def _transfer_statistics(image: Image.Image, style: Image.Image) -> Image.Image:
    """Reinhard colour transfer in RGB: each channel moved to the style's mean and spread."""
    source, target = ImageStat.Stat(image), ImageStat.Stat(style.resize((256, 256), Image.Resampling.BOX))
    luts = []
    for band in range(3):
        gain = target.stddev[band] / max(source.stddev[band], 1.0)
        luts += [min(255, max(0, round((v - source.mean[band]) * gain + target.mean[band]))) for v in range(256)]
    return image.point(luts)


# --- the thirteen services -------------------------------------------------------------------------------
def _upscale_size(operation, size: tuple[int, int]) -> tuple[int, int]:
    """`output_scale` (of each side) from the table when it has one (Fast: x4 a side); else about x4 a
    side, capped at the table's `output_pixels`."""
    width, height = size
    if operation.output_pixels is None:
        side = operation.output_scale
        return round(width * side), round(height * side)
    side = min(UPSCALE_SIDE, math.sqrt(operation.output_pixels / (width * height)))
    return max(1, math.floor(width * side)), max(1, math.floor(height * side))


def upscale_fast(request: ServiceRequest, look: Look) -> Image.Image:
    """Exactly four times each side, LANCZOS."""
    image = _rgb(request.image)
    return image.resize(_upscale_size(request.operation, image.size), Image.Resampling.LANCZOS)


def upscale_conservative(request: ServiceRequest, look: Look) -> Image.Image:
    """About four times each side, LANCZOS, with a mild unsharp mask."""
    image = _rgb(request.image)
    large = image.resize(_upscale_size(request.operation, image.size), Image.Resampling.LANCZOS)
    return large.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=2))


def upscale_creative(request: ServiceRequest, look: Look) -> Image.Image:
    """As conservative, with detail (and a touch of the prompt's tint) growing with `creativity`."""
    image = _rgb(request.image)
    creativity = float(request.values["creativity"])
    large = image.resize(_upscale_size(request.operation, image.size), Image.Resampling.LANCZOS)
    sharp = large.filter(ImageFilter.UnsharpMask(radius=2, percent=round(80 + 600 * creativity), threshold=1))
    return _styled(Image.blend(sharp, _tinted(sharp, look), creativity / 4), request, look)


def inpaint(request: ServiceRequest, look: Look) -> Image.Image:
    """The mask's white refilled from its surroundings, tinted by the prompt, with seeded shapes."""
    image = _rgb(request.image)
    mask = edit_mask(request, request.image)
    filled = surroundings(image, mask)
    made = Image.blend(Image.blend(filled, _tinted(filled, look), 0.65), invent(image.size, look), 0.3)
    return Image.composite(_styled(made, request, look), image, mask)


def erase(request: ServiceRequest, look: Look) -> Image.Image:
    """The mask's white filled from its surroundings, with no prompt."""
    image = _rgb(request.image)
    mask = edit_mask(request, request.image)
    return Image.composite(surroundings(image, mask), image, mask)


def outpaint(request: ServiceRequest, look: Look) -> Image.Image:
    """A larger canvas: the edges stretched outwards and blurred, tinted by `creativity` and the prompt;
    the original pixels unchanged in the middle."""
    image = _rgb(request.image)
    left, right, up, down = (int(request.values[name]) for name in ("left", "right", "up", "down"))
    width, height = image.size
    canvas = Image.new("RGB", (width + left + right, height + up + down))
    # Edge replication: each outside pixel takes the nearest edge pixel (corners the corner's colour).
    columns = [(0, left, 0, 1), (left, left + width, 0, width), (left + width, left + width + right, width - 1, width)]
    rows = [(0, up, 0, 1), (up, up + height, 0, height), (up + height, up + height + down, height - 1, height)]
    for x0, x1, sx0, sx1 in columns:
        for y0, y1, sy0, sy1 in rows:
            if x1 > x0 and y1 > y0:
                canvas.paste(image.crop((sx0, sy0, sx1, sy1)).resize((x1 - x0, y1 - y0), Image.Resampling.NEAREST),
                             (x0, y0))
    creativity = float(request.values["creativity"])
    reach = max(left, right, up, down)
    made = _soft(canvas, max(2.0, reach / 6))
    if request.prompt:
        made = Image.blend(made, _tinted(made, look), creativity / 2)
    made = Image.blend(made, invent(canvas.size, look), creativity / 5)
    made = _styled(made, request, look)
    made.paste(image, (left, up))
    return made


def remove_background(request: ServiceRequest, look: Look) -> Image.Image:
    """RGBA: the colour of the border made transparent (soft edge), everything unlike it kept."""
    image = _rgb(request.image)
    cut = image.copy()
    cut.putalpha(foreground(image))
    return cut


def search_recolor(request: ServiceRequest, look: Look) -> Image.Image:
    """The found region recoloured in the prompt's colours, keeping its light and shade."""
    image = _rgb(request.image)
    return Image.composite(_styled(_tinted(image, look), request, look), image, found_region(request, image))


def search_replace(request: ServiceRequest, look: Look) -> Image.Image:
    """The found region replaced by something "new": seeded shapes in the prompt's colours."""
    image = _rgb(request.image)
    region = found_region(request, image)
    made = Image.blend(invent(image.size, look), _tinted(surroundings(image, region), look), 0.35)
    return Image.composite(_styled(made, request, look), image, region)


def _controlled(request: ServiceRequest, look: Look, structure: Image.Image) -> Image.Image:
    """A picture in the prompt's colours following `structure` (L) as closely as control_strength says."""
    image = request.image
    free = invent(image.size, look)
    guided = ImageOps.colorize(structure, black=tuple(c // 5 for c in look.accent), white=look.tint)
    guided = ImageChops.multiply(Image.blend(free, guided, 0.5), Image.merge("RGB", (structure,) * 3).point(
        lambda v: 96 + v * 159 // 255))
    return _styled(Image.blend(free, guided, float(request.values["control_strength"])), request, look)


def control_sketch(request: ServiceRequest, look: Look) -> Image.Image:
    """The sketch's lines as dark ink over a picture in the prompt's colours."""
    lines = ImageOps.invert(_edges(_rgb(request.image), 4))
    return _controlled(request, look, lines)


def control_structure(request: ServiceRequest, look: Look) -> Image.Image:
    """The input's light and shade (blurred, posterized) plus its outlines, painted in the prompt's colours."""
    image = _rgb(request.image)
    shape = ImageOps.posterize(_soft(image.convert("L"), 3), 3)
    structure = ImageChops.multiply(shape, ImageOps.invert(_edges(image, 3)))
    return _controlled(request, look, ImageOps.autocontrast(structure))


def style_guide(request: ServiceRequest, look: Look) -> Image.Image:
    """A new ~1 MP picture at `aspect_ratio`, painted with the input's palette (more so with `fidelity`)."""
    width, height = (int(v) for v in str(request.values["aspect_ratio"]).split(":"))
    made = invent(sd35_size(width * 1000, height * 1000), look)
    painted = _palette_map(made, _rgb(request.image))
    return _styled(Image.blend(made, painted, 0.5 + 0.5 * float(request.values["fidelity"])), request, look)


def style_transfer(request: ServiceRequest, look: Look) -> Image.Image:
    """The style image's colour statistics moved onto the init image, by style_strength (0 = unchanged);
    a lower composition_fidelity softens the layout."""
    image = _rgb(request.image)
    strength = float(request.values["style_strength"])
    if strength == 0:
        return image
    moved = _transfer_statistics(image, _rgb(request.style_image))
    loose = 1 - float(request.values["composition_fidelity"])
    if loose > 0:
        moved = Image.blend(moved, _soft(moved, 4), loose / 2)
    return Image.blend(image, moved, strength)


TREATMENTS: dict[str, Callable[[ServiceRequest, Look], Image.Image]] = {
    "upscale-creative": upscale_creative, "upscale-conservative": upscale_conservative,
    "upscale-fast": upscale_fast, "inpaint": inpaint, "outpaint": outpaint, "erase": erase,
    "remove-background": remove_background, "search-replace": search_replace, "search-recolor": search_recolor,
    "control-sketch": control_sketch, "control-structure": control_structure, "style-guide": style_guide,
    "style-transfer": style_transfer,
}


def render(request: ServiceRequest, seed: int) -> Image.Image:
    """The service's treatment; RGBA only where the table says the output keeps transparency."""
    result = TREATMENTS[request.operation.name](request, make_look(request, seed))
    return result if request.operation.transparent else _rgb(result)
