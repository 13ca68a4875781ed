"""The contact sheet draws Chinese prompts as characters: each CJK character comes from the pinned
Noto Sans SC subset that has it (installed by `make install` through npm), never Pillow's box glyph."""
from PIL import Image, ImageChops, ImageDraw

from img2img_local.glyphs import TextDrawer, _subsets


def rendered(text: str) -> Image.Image:
    canvas = Image.new("L", (200, 40), 255)
    TextDrawer(20).draw(ImageDraw.Draw(canvas), (2, 2), text, fill=0)
    return canvas


def test_the_pinned_font_is_installed_with_its_subsets():
    assert len(_subsets()) > 50  # node_modules/@fontsource/noto-sans-sc from package-lock.json


def test_cjk_characters_are_drawn_by_the_cjk_font_and_look_different_from_each_other():
    drawer = TextDrawer(20)
    runs = drawer.runs("cat 一只猫")
    assert runs[0] == ("cat ", drawer.fallback) and all(font is not drawer.fallback for _, font in runs[1:])
    one, cat = rendered("一"), rendered("猫")
    assert ImageChops.difference(one, cat).getbbox() is not None  # boxes would be identical
    assert one.getextrema()[0] < 128  # something was drawn at all
