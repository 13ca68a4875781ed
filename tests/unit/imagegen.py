"""Small, deterministic test images generated in memory (no files written).

Every helper returns encoded bytes exactly as an upload would arrive, so tests go through the same
header sniffing, limits and decoding as the worker does.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageStat

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE_NAMES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def solid(size=(64, 48), color=RED, mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def quadrants(size=(400, 200), colors=(RED, GREEN, BLUE, YELLOW)) -> Image.Image:
    """Top-left, top-right, bottom-left, bottom-right filled with the four colours."""
    w, h = size
    image = Image.new("RGB", size)
    tl, tr, bl, br = colors
    image.paste(tl, (0, 0, w // 2, h // 2))  # paste, not draw: a 1-pixel side has empty quadrants
    image.paste(tr, (w // 2, 0, w, h // 2))
    image.paste(bl, (0, h // 2, w // 2, h))
    image.paste(br, (w // 2, h // 2, w, h))
    return image


def stripes(size=(900, 300), colors=(RED, GREEN, BLUE)) -> Image.Image:
    """Vertical stripes of equal width, left to right."""
    w, h = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    n = len(colors)
    for i, color in enumerate(colors):
        draw.rectangle((i * w // n, 0, (i + 1) * w // n - 1, h - 1), fill=color)
    return image


def textured(size=(640, 480), seed=0) -> Image.Image:
    """A non-flat picture (gradients plus shapes): survives resampling, compresses like a photo."""
    w, h = size
    gradient = Image.linear_gradient("L").resize(size)
    r = gradient
    g = gradient.transpose(Image.Transpose.ROTATE_90).resize(size)
    b = Image.radial_gradient("L").resize(size)
    image = Image.merge("RGB", (r, g, b))
    draw = ImageDraw.Draw(image)
    for i in range(6):
        x = (seed * 37 + i * 97) % max(1, w - 40)
        y = (seed * 53 + i * 61) % max(1, h - 40)
        draw.ellipse((x, y, x + 40, y + 30), fill=((i * 40) % 256, 255 - i * 30, (i * 90) % 256))
    return image


def gradient_16bit(size=(256, 64)) -> Image.Image:
    """A horizontal 16-bit gray gradient from 0 to 65535 (mode I;16)."""
    w, h = size
    row = [round(x * 65535 / (w - 1)) for x in range(w)]
    raw = struct.pack(f"<{w * h}H", *(row * h))
    return Image.frombytes("I;16", size, raw)


def exif_jpeg(image: Image.Image, orientation: int, quality: int = 95) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif, quality=quality)


def animated(fmt: str, colors=(RED, GREEN, BLUE), size=(80, 60)) -> bytes:
    frames = [Image.new("RGB", size, c) for c in colors]
    options = {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0}
    if fmt.upper() == "WEBP":
        options["lossless"] = True
    return encode(frames[0], fmt, **options)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, followed by a few bytes of pixel data only.

    Pillow opens it (the header is fine); decoding the pixels would fail as truncated. So an
    `image_too_large` answer proves the size was checked before any decoding was attempted.
    """
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def heic(image: Image.Image) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return encode(image, "HEIF", quality=90)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference (0..255) after bringing `b` to `a`'s size."""
    a = a.convert("RGB")
    b = b.convert("RGB").resize(a.size, Image.Resampling.BILINEAR)
    stat = ImageStat.Stat(ImageChops.difference(a, b))
    return sum(stat.mean) / len(stat.mean)


def close(pixel, expected, tolerance=12) -> bool:
    return all(abs(int(p) - int(e)) <= tolerance for p, e in zip(pixel, expected))


# ---- running prepare the way the worker does ------------------------------------------------------

@functools.cache
def adapters() -> dict:
    """The two model adapters whose `target_size` decides the prepared size (imported late: cheap import)."""
    from img2img.models.sd35 import SD35Adapter
    from img2img.models.sdxl import SDXLAdapter

    return {"sdxl": SDXLAdapter(), "sd35": SD35Adapter()}


def sdxl_size(width: int, height: int) -> tuple[int, int]:
    return adapters()["sdxl"].target_size(width, height)


def prepare(data: bytes, adapter="sdxl", **kw):
    """images.prepare with a model's target size; returns the PreparedImage and its decoded PNG."""
    from img2img.core import images

    prepared = images.prepare(data, adapters()[adapter].target_size, **kw)
    return prepared, decode(prepared.png)


def at(image: Image.Image, fx: float, fy: float):
    """The pixel at a fraction of the width and height."""
    return image.getpixel((min(image.width - 1, int(image.width * fx)), min(image.height - 1, int(image.height * fy))))


def palette(colors) -> list[int]:
    flat = [c for rgb in colors for c in rgb]
    return flat + [0] * (768 - len(flat))


def model_output(prepared, fmt="PNG") -> bytes:
    """What a model might answer: an image of the prepared size (here, the prepared image itself)."""
    return encode(decode(prepared.png), fmt)


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def stored_for(upright: Image.Image, orientation: int) -> Image.Image:
    """The stored pixels that EXIF `orientation` turns into `upright` (the inverse of exif_transpose)."""
    inverse = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
               7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}
    return upright.transpose(inverse[orientation]) if orientation in inverse else upright.copy()


def has_heif() -> bool:
    """pillow-heif is installed (and registered, so Pillow can write HEIC files for the tests)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def in_mode(image: Image.Image, mode: str) -> Image.Image:
    """An RGB picture in `mode` as a file would store it: 16-bit modes use the 16-bit range, I a wide
    one, F 0..1; the rest are Pillow's own conversions (1 dithered, P on the web palette)."""
    if mode.startswith("I;16"):
        return image.convert("L").convert("I").point(lambda v: v * 257).convert(mode)
    if mode == "I":
        return image.convert("L").convert("I").point(lambda v: v * 1000 - 100_000)
    if mode == "F":
        return image.convert("L").convert("F").point(lambda v: v / 255.0)
    if mode == "PA":
        return image.convert("P").convert("PA")
    return image.convert(mode)
