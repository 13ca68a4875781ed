"""Deterministic classical image treatments that stand in for diffusion (this is NOT a generative model).

Each style preset is a visibly different Pillow treatment; prompt words pick tints and, without a preset,
the treatment itself; the seed drives everything random. The amount of change (SDXL image_strength,
SD3.5 strength) blends the original towards a target that is the stylised image partly "reimagined"
(abstracted, recoloured), so pipelines can be developed and benchmarked offline on images that are
clearly derived from their inputs.
"""
from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from .validation import SDXL, STYLE_PRESETS, RenderRequest, ServiceRequest

ONE_MEGAPIXEL = 1_048_576
# The smallest amount of change: even "keep the input" is re-rendered, as a real model would.
MIN_CHANGE = 0.05
# < 1 bends the change curve so mid strengths already show the treatment clearly (still monotonic).
CHANGE_CURVE = 0.6
# How much of the full-strength target is the abstracted "reimagined" image rather than the stylised one;
# larger without a preset, where the prompt alone drives the picture.
REIMAGINED_SHARE = {"preset": 0.35, "prompt": 0.6}

COLOUR_WORDS = {
    "red": (210, 40, 45), "orange": (240, 130, 40), "yellow": (240, 210, 60), "gold": (220, 170, 60),
    "green": (60, 170, 80), "forest": (40, 110, 60), "blue": (50, 90, 210), "ocean": (30, 110, 170),
    "sea": (40, 120, 170), "sky": (110, 170, 235), "purple": (130, 60, 180), "violet": (140, 80, 200),
    "pink": (235, 120, 170), "night": (30, 40, 110), "moon": (170, 180, 210), "space": (40, 30, 90),
    "sunset": (245, 110, 60), "fire": (230, 70, 20), "ice": (170, 220, 240), "winter": (200, 215, 235),
    "autumn": (200, 100, 40), "desert": (220, 180, 120), "neon": (255, 40, 200), "coffee": (110, 70, 40),
    "cyberpunk": (0, 220, 220), "storm": (80, 90, 110), "rain": (90, 110, 140), "snow": (235, 240, 250),
}
PAPER = (246, 241, 230)


@dataclass(frozen=True)
class Look:
    """Everything a treatment may vary, derived from prompt + seed so equal requests render equal bytes."""

    tint: tuple[int, int, int]
    accent: tuple[int, int, int]
    angle: float
    balance: tuple[int, int, int]
    digest: bytes

    def rng(self, purpose: str) -> random.Random:
        """A private random stream per purpose, so one treatment's draws never shift another's."""
        return random.Random(self.digest + purpose.encode())


def make_look(request: RenderRequest | ServiceRequest, seed: int) -> Look:
    text = f"{request.prompt}\x00{request.negative_prompt}\x00{seed}\x00{request.style_preset}"
    digest = hashlib.sha256(text.encode()).digest()
    words = re.findall(r"[a-z]+", request.prompt.lower())
    colours = [COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS]
    prompt_hue = int.from_bytes(hashlib.sha256(request.prompt.encode()).digest()[:2], "big") / 65535
    tint = colours[0] if colours else _hsv(prompt_hue, 0.55, 0.9)
    accent = colours[1] if len(colours) > 1 else _hsv((prompt_hue + 0.5) % 1, 0.6, 0.45)
    return Look(tint=tint, accent=accent, angle=60 + digest[0] * 240 / 255,
                balance=tuple(b % 13 - 6 for b in digest[1:4]), digest=digest)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    return tuple(round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v))


# --- building blocks -------------------------------------------------------------------------------------
def _soft(image: Image.Image, radius: float) -> Image.Image:
    """Gaussian blur computed at reduced size: the same look for a fraction of the time."""
    factor = 4 if radius >= 6 else 2 if radius >= 2 else 1
    if factor == 1:
        return image.filter(ImageFilter.GaussianBlur(radius))
    small = image.reduce(factor).filter(ImageFilter.GaussianBlur(radius / factor))
    return small.resize(image.size, Image.Resampling.BILINEAR)


def _edges(image: Image.Image, gain: float) -> Image.Image:
    """Edge strength (L, 0 = flat), found at half size so lines come out smooth and about 2 px wide."""
    half = image.convert("L").reduce(2).filter(ImageFilter.SMOOTH).filter(ImageFilter.FIND_EDGES)
    return half.point(lambda v: min(255, round(v * gain))).resize(image.size, Image.Resampling.BILINEAR)


def _ink(image: Image.Image, threshold: int) -> Image.Image:
    """Dark outlines on white (RGB), for multiplying over flat colour."""
    lines = _edges(image, 1.0).point(lambda v: 0 if v > threshold else 255)
    return Image.merge("RGB", (lines, lines, lines))


@functools.lru_cache(maxsize=32)
def _radial(size: tuple[int, int]) -> Image.Image:
    """0 at the centre, 255 at the corners."""
    return Image.radial_gradient("L").resize(size, Image.Resampling.BILINEAR)


def _vignette(image: Image.Image, strength: float) -> Image.Image:
    shade = _radial(image.size).point(lambda v: round(255 * (1 - strength * (v / 255) ** 2)))
    return ImageChops.multiply(image, Image.merge("RGB", (shade, shade, shade)))


def _hue_rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Hue rotation as one colour matrix (much faster than an HSV round trip)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    matrix = (0.213 + c * 0.787 - s * 0.213, 0.715 - c * 0.715 - s * 0.715, 0.072 - c * 0.072 + s * 0.928, 0,
              0.213 - c * 0.213 + s * 0.143, 0.715 + c * 0.285 + s * 0.140, 0.072 - c * 0.072 - s * 0.283, 0,
              0.213 - c * 0.213 - s * 0.787, 0.715 - c * 0.715 + s * 0.715, 0.072 + c * 0.928 + s * 0.072, 0)
    return image.convert("RGB", matrix)


def _gradient_wash(size: tuple[int, int], look: Look) -> Image.Image:
    """A two-colour diagonal gradient in the prompt's colours, oriented by the seed."""
    ramp = Image.linear_gradient("L")
    across = ramp.transpose(Image.Transpose.ROTATE_90)
    mixed = Image.blend(ramp, across, (look.angle % 90) / 90)
    if look.angle > 180:
        mixed = ImageOps.flip(mixed)
    return ImageOps.colorize(mixed.resize(size, Image.Resampling.BILINEAR), black=look.accent, white=look.tint)


def _facets(image: Image.Image, look: Look, cells: int, pastel: float, fold: float) -> Image.Image:
    """Flat-coloured jittered triangles (low-poly / origami), drawn at half size for speed."""
    width, height = image.size
    half = (max(1, width // 2), max(1, height // 2))
    columns = cells
    rows = max(1, round(cells * height / width))
    cell_w, cell_h = half[0] / columns, half[1] / rows
    sampler = image.resize((columns * 4, rows * 4), Image.Resampling.BOX)
    rng = look.rng("facets")
    points = [[(min(half[0], max(0.0, (i + (rng.uniform(-0.35, 0.35) if 0 < i < columns else 0)) * cell_w)),
                min(half[1], max(0.0, (j + (rng.uniform(-0.35, 0.35) if 0 < j < rows else 0)) * cell_h)))
               for i in range(columns + 1)] for j in range(rows + 1)]
    canvas = Image.new("RGB", half, PAPER)
    draw = ImageDraw.Draw(canvas)
    for j in range(rows):
        for i in range(columns):
            a, b, c, d = points[j][i], points[j][i + 1], points[j + 1][i + 1], points[j + 1][i]
            triangles = ((a, b, c), (a, c, d)) if rng.random() < 0.5 else ((a, b, d), (b, c, d))
            for k, triangle in enumerate(triangles):
                cx = sum(p[0] for p in triangle) / 3 / half[0] * (columns * 4 - 1)
                cy = sum(p[1] for p in triangle) / 3 / half[1] * (rows * 4 - 1)
                colour = sampler.getpixel((round(cx), round(cy)))
                shade = (1 - fold) if k else (1 + fold / 3)
                colour = tuple(min(255, round((v * (1 - pastel) + p * pastel) * shade))
                               for v, p in zip(colour, PAPER, strict=False))  # RGB of any mode
                draw.polygon(triangle, fill=colour)
    return canvas.resize((width, height), Image.Resampling.BILINEAR)


# --- the 17 style presets --------------------------------------------------------------------------------
def three_d_model(image: Image.Image, look: Look) -> Image.Image:
    """Smooth saturated shapes lit by an embossed relief and a cool key light."""
    base = ImageEnhance.Color(_soft(image, 2)).enhance(1.4)
    relief = _soft(image.convert("L"), 2).filter(ImageFilter.EMBOSS)
    lit = ImageChops.overlay(base, Image.merge("RGB", (relief, relief, relief)))
    light = ImageOps.colorize(Image.linear_gradient("L").resize(image.size), black=(70, 80, 110),
                              white=(255, 255, 255))
    return ImageChops.multiply(lit, light)


def analog_film(image: Image.Image, look: Look) -> Image.Image:
    """Faded curves (lifted blacks, soft whites), warm cast, lower saturation and seeded grain."""
    fade = [round(28 + v * 0.78) for v in range(256)]
    faded = image.point(fade * 2 + [round(18 + v * 0.72) for v in range(256)])
    faded = ImageEnhance.Color(faded).enhance(0.7)
    width, height = image.size
    grain = Image.frombytes("L", (width, height), look.rng("grain").randbytes(width * height))
    grain = grain.point(lambda v: v * 30 // 255)
    return _vignette(ImageChops.add(faded, Image.merge("RGB", (grain, grain, grain)), 1.0, -15), 0.35)


def anime(image: Image.Image, look: Look) -> Image.Image:
    """Cel shading: smoothed, saturated, three-bit flat colour with thin ink outlines."""
    flat = ImageOps.posterize(ImageEnhance.Color(_soft(image, 2)).enhance(1.6), 3)
    return ImageChops.multiply(ImageEnhance.Brightness(flat).enhance(1.1), _ink(image, 40))


def cinematic(image: Image.Image, look: Look) -> Image.Image:
    """Teal shadows, orange highlights, high contrast, heavy vignette and letterbox bars."""
    red = [round(255 * (v / 255) ** 0.85) for v in range(256)]
    green = list(range(256))
    blue = [round(40 + v * 0.7) for v in range(256)]
    graded = ImageEnhance.Contrast(image.point(red + green + blue)).enhance(1.3)
    graded = _vignette(graded, 0.6)
    width, height = image.size
    bar = min(round(height * 0.12), max(round(height * 0.06), round((height - width / 2.39) / 2)))
    draw = ImageDraw.Draw(graded)
    draw.rectangle((0, 0, width, bar), fill=(0, 0, 0))
    draw.rectangle((0, height - bar, width, height), fill=(0, 0, 0))
    return graded


def comic_book(image: Image.Image, look: Look) -> Image.Image:
    """Two-bit posterized saturated colour under thick black ink."""
    flat = ImageOps.posterize(ImageEnhance.Color(_soft(image, 2)).enhance(1.8), 2)
    thick = _soft(_ink(image, 24), 2).point(lambda v: 0 if v < 200 else 255)
    return ImageChops.multiply(flat, thick)


def digital_art(image: Image.Image, look: Look) -> Image.Image:
    """Vivid colour with a soft glow and crisp detail, hue nudged towards the prompt."""
    vivid = ImageEnhance.Contrast(ImageEnhance.Color(image).enhance(1.8)).enhance(1.15)
    glow = ImageChops.screen(vivid, _soft(vivid, 8))
    glowing = Image.blend(_soft(vivid, 2), Image.blend(vivid, glow, 0.5), 1.6)
    return _hue_rotate(glowing, 25 if look.angle > 180 else -25)


def enhance(image: Image.Image, look: Look) -> Image.Image:
    """Auto levels, local contrast and richer colour: the same picture, 'better'."""
    levelled = ImageOps.autocontrast(image, cutoff=2)
    crisp = Image.blend(_soft(levelled, 3), levelled, 1.8)
    return ImageEnhance.Contrast(ImageEnhance.Color(crisp).enhance(1.35)).enhance(1.1)


def fantasy_art(image: Image.Image, look: Look) -> Image.Image:
    """Dreamy bloom, purple-to-gold split toning and lifted saturation."""
    bloom = ImageChops.screen(image, _soft(image, 10))
    toned = ImageOps.colorize(image.convert("L"), black=(40, 10, 70), white=(255, 225, 150), mid=look.tint)
    return ImageEnhance.Color(Image.blend(bloom, toned, 0.4)).enhance(1.3)


def isometric(image: Image.Image, look: Look) -> Image.Image:
    """The picture as a flat-shaded diamond, rotated 45 degrees and squashed, on a pale ground."""
    width, height = image.size
    cx, cy, shrink = width / 2, height / 2, 0.7
    cos, sin = math.cos(math.pi / 4) / shrink, math.sin(math.pi / 4) / shrink
    a, b, d, e = cos, 2 * sin, -sin, 2 * cos
    matrix = (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)
    flat = ImageOps.posterize(image, 3)
    ground = tuple(round(p * 0.8 + t * 0.2) for p, t in zip(PAPER, look.tint, strict=True))
    top = flat.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)
    diamond = Image.new("L", image.size, 255).transform(image.size, Image.Transform.AFFINE, matrix, fillcolor=0)
    canvas = Image.new("RGB", image.size, ground)
    canvas.paste(ImageEnhance.Brightness(top).enhance(0.55), (0, round(height * 0.04)), diamond)
    canvas.paste(top, (0, 0), diamond)
    return canvas


def line_art(image: Image.Image, look: Look) -> Image.Image:
    """Only the outlines, in a dark ink of the prompt's hue, on paper."""
    ink = ImageOps.invert(_edges(image, 5))
    dark = tuple(round(c * 0.3) for c in look.tint)
    return ImageOps.colorize(ink, black=dark, white=PAPER)


def low_poly(image: Image.Image, look: Look) -> Image.Image:
    """Jittered triangle mesh, each facet the average colour under it."""
    return _facets(image, look, cells=32, pastel=0.0, fold=0.08)


def modeling_compound(image: Image.Image, look: Look) -> Image.Image:
    """Clay: very smooth, few warm muted tones, soft thumbed relief."""
    clay = ImageOps.posterize(_soft(image, 4), 3)
    clay = ImageEnhance.Color(clay).enhance(0.75)
    warm = ImageOps.colorize(clay.convert("L"), black=(70, 40, 30), white=(255, 235, 205))
    relief = _soft(clay.convert("L").filter(ImageFilter.EMBOSS), 2)
    return ImageChops.overlay(Image.blend(clay, warm, 0.35), Image.merge("RGB", (relief, relief, relief)))


def neon_punk(image: Image.Image, look: Look) -> Image.Image:
    """A darkened scene whose edges glow magenta and cyan."""
    neon = ImageOps.colorize(_edges(image, 5), black=(0, 0, 0), white=(120, 255, 255), mid=(255, 20, 200))
    dark = ImageChops.multiply(ImageEnhance.Brightness(image).enhance(0.45),
                               Image.new("RGB", image.size, (150, 90, 255)))
    return ImageChops.screen(ImageChops.screen(dark, _soft(neon, 6)), neon)


def origami(image: Image.Image, look: Look) -> Image.Image:
    """Large pastel paper facets with light and shadow folds."""
    return _facets(image, look, cells=12, pastel=0.3, fold=0.22)


def photographic(image: Image.Image, look: Look) -> Image.Image:
    """Warm balance, gentle contrast, shallow depth of field and a soft vignette."""
    warm = image.point([min(255, round(v * 1.06)) for v in range(256)] + list(range(256))
                       + [round(v * 0.92) for v in range(256)])
    warm = ImageEnhance.Contrast(warm).enhance(1.12)
    falloff = _radial(image.size).point(lambda v: min(255, v * 2))
    focused = Image.composite(_soft(warm, 5), warm, falloff)
    return _vignette(focused, 0.3)


def pixel_art(image: Image.Image, look: Look) -> Image.Image:
    """About 96 chunky pixels across, a 16-colour palette, nearest-neighbour upscaled."""
    width, height = image.size
    block = max(4, round(max(width, height) / 96))
    small = image.resize((max(1, width // block), max(1, height // block)), Image.Resampling.BOX)
    small = ImageEnhance.Color(small).enhance(1.3)
    palette = small.quantize(colors=16, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return palette.convert("RGB").resize((width, height), Image.Resampling.NEAREST)


def tile_texture(image: Image.Image, look: Look) -> Image.Image:
    """A seamless texture: the centre of the picture mirrored into a repeating 4x4 pattern."""
    width, height = image.size
    side = min(width, height) // 2
    left, top = (width - side) // 2, (height - side) // 2
    tile_w, tile_h = math.ceil(width / 4), math.ceil(height / 4)
    tile = image.resize((tile_w, tile_h), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    block = Image.new("RGB", (tile_w * 2, tile_h * 2))
    block.paste(tile, (0, 0))
    block.paste(ImageOps.mirror(tile), (tile_w, 0))
    block.paste(ImageOps.flip(tile), (0, tile_h))
    block.paste(tile.transpose(Image.Transpose.ROTATE_180), (tile_w, tile_h))
    texture = Image.new("RGB", (width, height))
    for x in range(0, width, tile_w * 2):
        for y in range(0, height, tile_h * 2):
            texture.paste(block, (x, y))
    return texture


def colour_grade(image: Image.Image, look: Look) -> Image.Image:
    """No preset: split-tone the picture in the prompt's colours."""
    toned = ImageOps.colorize(image.convert("L"), black=tuple(c // 4 for c in look.accent), white=(255, 250, 240),
                              mid=look.tint)
    return ImageEnhance.Contrast(Image.blend(image, toned, 0.45)).enhance(1.15)


PRESETS: dict[str, Callable[[Image.Image, Look], Image.Image]] = {
    "3d-model": three_d_model, "analog-film": analog_film, "anime": anime, "cinematic": cinematic,
    "comic-book": comic_book, "digital-art": digital_art, "enhance": enhance, "fantasy-art": fantasy_art,
    "isometric": isometric, "line-art": line_art, "low-poly": low_poly, "modeling-compound": modeling_compound,
    "neon-punk": neon_punk, "origami": origami, "photographic": photographic, "pixel-art": pixel_art,
    "tile-texture": tile_texture,
}
assert set(PRESETS) == set(STYLE_PRESETS)


def treatment_for(request: RenderRequest) -> Callable[[Image.Image, Look], Image.Image]:
    """The requested preset; else a preset named in the prompt ("origami paper", "pixel art"); else a grade."""
    if request.style_preset:
        return PRESETS[request.style_preset]
    prompt = " " + " ".join(re.findall(r"[a-z0-9]+", request.prompt.lower())) + " "
    for name in STYLE_PRESETS:
        if f" {name.replace('-', ' ')} " in prompt:
            return PRESETS[name]
    return colour_grade


# --- composition -----------------------------------------------------------------------------------------
def reimagine(stylised: Image.Image, look: Look) -> Image.Image:
    """What strength 1 tends to: the layout dissolved into blobs, mixed with shapes from the prompt and seed."""
    width, height = stylised.size
    blobs = stylised.resize((max(1, width // 32), max(1, height // 32)), Image.Resampling.BOX)
    dream = _hue_rotate(blobs, look.angle).resize((width, height), Image.Resampling.BICUBIC)
    return ImageOps.posterize(Image.blend(dream, invent((width, height), look), 0.5), 4)


def invent(size: tuple[int, int], look: Look) -> Image.Image:
    """Text-to-image stand-in: soft seeded shapes over the prompt's gradient."""
    small = _gradient_wash((64, 64), look)
    draw = ImageDraw.Draw(small)
    rng = look.rng("shapes")
    for _ in range(6):
        x, y, r = rng.uniform(0, 64), rng.uniform(0, 64), rng.uniform(6, 20)
        colour = look.tint if rng.random() < 0.5 else look.accent
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(255 - c if rng.random() < 0.3 else c for c in colour))
    return small.filter(ImageFilter.GaussianBlur(2)).resize(size, Image.Resampling.BICUBIC)


def sd35_size(width: int, height: int) -> tuple[int, int]:
    """About one megapixel in the input's aspect ratio, sides multiples of 64 (64..4096)."""
    scale = math.sqrt(ONE_MEGAPIXEL / (width * height))
    return tuple(min(4096, max(64, round(side * scale / 64) * 64)) for side in (width, height))


def _source(request: RenderRequest) -> Image.Image:
    """The init image as RGB at the output size (SDXL keeps its size; SD3.5 goes to ~1 MP)."""
    image = request.image
    if request.model == SDXL:
        return image.convert("RGB")
    size = sd35_size(*image.size)
    image.draft("RGB", size)
    image = image.convert("RGB")
    # Crop the few pixels the rounding to multiples of 64 changed, rather than distorting.
    ratio = size[0] / size[1]
    crop_w, crop_h = min(image.width, image.height * ratio), min(image.height, image.width / ratio)
    box = ((image.width - crop_w) / 2, (image.height - crop_h) / 2,
           (image.width + crop_w) / 2, (image.height + crop_h) / 2)
    return image.resize(size, Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)


def intensity(request: RenderRequest) -> float:
    """How strongly the treatment applies: cfg_scale and steps nudge it, as guidance would."""
    return min(1.0, 0.8 + 0.1 * request.cfg_scale / 35 + 0.1 * (request.steps - 10) / 40)


def render(request: RenderRequest, seed: int) -> Image.Image:
    look = make_look(request, seed)
    treatment = treatment_for(request)
    if request.image is None:
        width, height = (int(v) for v in request.aspect_ratio.split(":"))
        invented = invent(sd35_size(width * 1000, height * 1000), look)
        result = Image.blend(invented, treatment(invented, look), intensity(request))
    else:
        # One fixed target and a straight blend towards it: more strength never keeps more of the input.
        original = _source(request)
        stylised = Image.blend(original, treatment(original, look), intensity(request))
        share = REIMAGINED_SHARE["prompt" if treatment is colour_grade else "preset"]
        target = Image.blend(stylised, reimagine(stylised, look), share)
        change = (MIN_CHANGE + (1 - MIN_CHANGE) * request.change) ** CHANGE_CURVE
        result = Image.blend(original, target, change)
    return result.point([min(255, max(0, v + shift)) for shift in look.balance for v in range(256)])


def filtered(image: Image.Image) -> Image.Image:
    """What Bedrock sends back with CONTENT_FILTERED: the picture blurred beyond recognition."""
    return _soft(image, max(image.size) / 12)


def encode(image: Image.Image, output_format: str) -> bytes:
    """Fast encoders: benchmarks push hundreds of images through the engine."""
    buffer = io.BytesIO()
    if output_format == "jpeg":
        if image.mode == "RGBA":  # JPEG has no alpha: flatten onto white, so a cut-out still looks cut out
            image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
        image.save(buffer, "JPEG", quality=90)
    elif output_format == "webp":
        image.save(buffer, "WEBP", quality=85, method=1)
    else:
        image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
