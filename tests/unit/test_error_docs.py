"""docs/errors.md is the contract users code against: it must list exactly the codes the code uses."""
import re
from pathlib import Path

from img2img.core.errors import ERROR_CODES, TRANSIENT_CAUSES


def test_every_error_code_is_documented_with_its_meaning():
    text = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    documented = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \|", text, flags=re.M))
    assert set(documented) >= set(ERROR_CODES)
    for code, meaning in ERROR_CODES.items():
        assert documented[code] == meaning, code


def test_every_transient_cause_is_documented_under_retries_exhausted():
    text = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `retries_exhausted`"))
    assert set(re.findall(r"`([a-z_]+)`", row.split("error.cause")[1])) == set(TRANSIENT_CAUSES)
