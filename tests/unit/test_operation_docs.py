"""docs/operations.md shows the operations table: every operation, model, field, range and image rule
as operations.py has them, so a corrected range cannot leave the docs behind."""
import re
from pathlib import Path

import pytest

from img2img.operations import SERVICES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


def section(name: str) -> str:
    match = re.search(rf"^### `{re.escape(name)}` .*?(?=^### |^## |\Z)", DOC, flags=re.M | re.S)
    assert match, f"docs/operations.md has no section for {name}"
    return match.group(0)


@pytest.mark.parametrize("operation", SERVICES, ids=lambda op: op.name)
def test_each_operation_is_documented_as_the_table_says(operation):
    text = section(operation.name)
    assert f"`{operation.default_model_id}`" in text
    assert operation.rule.text in text
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (?:yes)? *\| (.+?) \|$", text, flags=re.M))
    assert rows == {f.name: f.allowed for f in operation.fields}
    required = set(re.findall(r"^\| `([a-z_]+)` \| yes \|", text, flags=re.M))
    assert required == {f.name for f in operation.fields if f.required}
    for companion in operation.companions:
        assert f"`{companion.name}`" in text
    assert f"operation={operation.name}" in text or f'"operation": "{operation.name}"' in text  # an example


def test_every_picture_the_docs_show_exists():
    for picture in re.findall(r"\]\((img/[^)]+)\)", DOC):
        assert (Path(__file__).resolve().parents[2] / "docs" / picture).is_file(), picture
