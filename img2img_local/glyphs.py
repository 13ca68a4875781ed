"""Text with every glyph on the contact sheet: Chinese prompts drawn as characters, not boxes.

Pillow's built-in font has Latin glyphs only. The project pins Noto Sans SC (SIL Open Font License) from
npm (package.json; `make install` runs `npm ci`), which Fontsource ships split by Unicode range into
subset files: each character is drawn with the subset that has it, runs of one subset at a time.
Without node_modules (no npm), text falls back to Pillow's font and CJK shows as boxes.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from PIL import ImageDraw, ImageFont

from img2img_local.project import REPO_ROOT

FONT_PACKAGE = REPO_ROOT / "node_modules" / "@fontsource" / "noto-sans-sc"
WEIGHT = 400


def _ranges(text: str) -> list[tuple[int, int]]:
    """`U+4e00-4e0f,U+4e11` -> [(0x4e00, 0x4e0f), (0x4e11, 0x4e11)]."""
    out = []
    for part in text.split(","):
        low, _, high = part.strip().upper().removeprefix("U+").partition("-")
        out.append((int(low, 16), int(high or low, 16)))
    return out


@lru_cache(maxsize=1)
def _subsets(package: Path = FONT_PACKAGE) -> tuple[tuple[Path, tuple[tuple[int, int], ...]], ...]:
    """(subset file, its code point ranges) for every subset of the pinned font; () without it."""
    index = package / "unicode.json"
    if not index.is_file():
        return ()
    subsets = []
    for name, ranges in json.loads(index.read_text()).items():
        subset = name.strip("[]")
        path = package / "files" / f"noto-sans-sc-{subset}-{WEIGHT}-normal.woff2"
        if path.is_file():
            subsets.append((path, tuple(_ranges(ranges))))
    return tuple(subsets)


def _subset_for(char: str) -> Path | None:
    point = ord(char)
    for path, ranges in _subsets():
        if any(low <= point <= high for low, high in ranges):
            return path
    return None


class TextDrawer:
    """Draws a line with the font file that has each character, at one size."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fallback = ImageFont.load_default(size=size)

    @lru_cache(maxsize=64)  # noqa: B019 (a few drawers per process, each kept for the sheet's lifetime)
    def _font(self, path: Path | None):
        return self.fallback if path is None else ImageFont.truetype(str(path), self.size)

    def runs(self, text: str) -> list[tuple[str, object]]:
        """`text` as (run, font) pairs, each run drawn by one font."""
        out: list[tuple[str, object]] = []
        for char in text:
            font = self.fallback if char.isascii() else self._font(_subset_for(char))
            if out and out[-1][1] is font:
                out[-1] = (out[-1][0] + char, font)
            else:
                out.append((char, font))
        return out

    def draw(self, draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, fill) -> None:
        x, y = xy
        for run, font in self.runs(text):
            draw.text((x, y), run, fill=fill, font=font)
            x += round(font.getlength(run))
