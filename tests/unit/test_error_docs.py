"""docs/errors.md is the contract users code against: it must list exactly the codes the code uses."""
import re
from pathlib import Path

from img2img.core.errors import ERROR_CODES


def test_every_error_code_is_documented_with_its_meaning():
    text = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    documented = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \|", text, flags=re.M))
    assert set(documented) >= set(ERROR_CODES)
    for code, meaning in ERROR_CODES.items():
        assert documented[code] == meaning, code
