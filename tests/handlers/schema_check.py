"""A tiny JSON Schema checker for the subset docs/events/*.schema.json use (jsonschema is not a dependency):
type, const, enum, required, properties, additionalProperties (false or a schema), items, min/maxItems, minLength,
minimum, pattern, oneOf and local $ref. Returns a list of problems (empty = valid)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "events"
_TYPES = {"object": dict, "array": list, "string": str, "null": type(None), "boolean": bool}


def load(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def _is(value: Any, type_name: str) -> bool:
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[type_name])


def check(value: Any, schema: dict, root: dict | None = None, path: str = "$") -> list[str]:  # noqa: C901
    root = root or schema
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        return check(value, root["$defs"][ref.split("/")[-1]], root, path)
    problems: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            return [f"{path}: {value!r} is not of type {types}"]
    if "const" in schema and value != schema["const"]:
        problems.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in {schema['enum']}")
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not check(value, s, root, path)]
        if len(matches) != 1:
            problems.append(f"{path}: matches {len(matches)} of oneOf")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{path}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if _is(value, "number") and "minimum" in schema and value < schema["minimum"]:
        problems.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            problems.append(f"{path}: {len(value)} items")
        for i, item in enumerate(value):
            problems += check(item, schema.get("items", {}), root, f"{path}[{i}]")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{path}: missing {name}")
        props = schema.get("properties", {})
        for name, item in value.items():
            if name in props:
                problems += check(item, props[name], root, f"{path}.{name}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}: unexpected {name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += check(item, schema["additionalProperties"], root, f"{path}.{name}")
    return problems
