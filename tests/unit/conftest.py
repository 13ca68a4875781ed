"""Unit-test fixtures: keep Pillow's process-wide pixel limit from leaking between tests."""
from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _restore_pillow_pixel_limit():
    saved = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = saved
