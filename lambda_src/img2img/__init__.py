"""bedrock-img2img's runtime package. Its name and version are what outputs say made them (XMP, C2PA);
pyproject.toml carries the same version (tests/unit/test_xmp.py checks they agree)."""

TOOL_NAME = "bedrock-img2img"
__version__ = "0.1.0"
