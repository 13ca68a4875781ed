"""Write the HTTP API's OpenAPI document (generated from img2img.handlers.api) to docs/openapi.json.

    python -m img2img_local.openapi            # regenerate
    python -m img2img_local.openapi --check    # exit 1 if the committed file is stale (a test does this too)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def render() -> str:
    from img2img.handlers.api import openapi_document  # the runtime package, installed with the project

    return json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in argv:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT} is stale: run python -m img2img_local.openapi", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
