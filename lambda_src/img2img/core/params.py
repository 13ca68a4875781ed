"""Job parameters: where they come from, which source wins, and errors that say exactly what is wrong.

Sources, later overriding earlier field by field:
deployment defaults < folder `_defaults.json` (root first, nearest last) < S3 metadata < sidecar JSON
(< an API or event request's own parameters). Values are checked here for shape only; each model
adapter then validates the merged values against its own rules with `collect_errors`.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from typing import TYPE_CHECKING, Any, Iterable

from .errors import JobError

if TYPE_CHECKING:  # pydantic is imported by the model adapters, when the first job is validated
    from pydantic import BaseModel

DEPLOYMENT = "deployment"
FOLDER_DEFAULTS = "folder_defaults"
METADATA = "metadata"
SIDECAR = "sidecar"
REQUEST = "request"

# Every field a job may set (union of the model families' vocabularies plus our own).
SDXL_FIELDS = ("text_prompts", "cfg_scale", "clip_guidance_preset", "init_image_mode", "image_strength",
               "step_schedule_start", "step_schedule_end", "sampler", "samples", "seed", "steps",
               "style_preset", "extras")
SD35_FIELDS = ("prompt", "negative_prompt", "strength", "mode", "seed", "output_format")
OUR_FIELDS = ("model_id", "output_format", "fit", "restore_aspect", "strict")
KNOWN_FIELDS = frozenset(SDXL_FIELDS + SD35_FIELDS + OUR_FIELDS)
# Fields metadata cannot carry as a single string value (they go in `params` or a sidecar).
_STRUCTURED = frozenset({"text_prompts", "extras"})
# The image travels as the object itself, never as a parameter.
_IMAGE_FIELDS = frozenset({"init_image", "image"})
# Setting one member of a group replaces the others: they say the same thing in two vocabularies.
_EXCLUSIVE = ({"image_strength", "strength"},)
MAX_SIDECAR_BYTES = 256 * 1024


@dataclass(frozen=True)
class Layer:
    """Parameters from one source. `origins` says, per field, exactly where it came from."""

    source: str
    values: dict[str, Any]
    origins: dict[str, str]


@dataclass
class MergedParams:
    """Values after precedence, with the origin of each. Prompts are kept as signed parts."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    positive: list[dict[str, Any]] = field(default_factory=list)
    negative: list[dict[str, Any]] = field(default_factory=list)

    @property
    def has_prompt(self) -> bool:
        return any(str(p.get("text", "")).strip() for p in self.positive)

    def origin(self, name: str) -> str:
        return self.origins.get(name, "default")

    def canonical(self) -> dict[str, Any]:
        """The effective parameters in the SDXL contract's vocabulary (prompts as text_prompts)."""
        out = dict(sorted(self.values.items()))
        prompts = self.positive + self.negative
        if prompts:
            out["text_prompts"] = prompts
        return out

    def fingerprint(self) -> str:
        """Stable hash of the effective parameters: part of the idempotency key."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _unknown(name: str, where: str) -> dict[str, Any]:
    close = difflib.get_close_matches(name, sorted(KNOWN_FIELDS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if name in _IMAGE_FIELDS:
        hint = "; the image is the uploaded object itself, remove this field"
    return {"field": name, "source": where, "message": f"unknown parameter {name!r}{hint}"}


def _layer_from_mapping(source: str, where: str, data: Any, *, ignore_unknown: bool = False,
                        origin_of=None) -> tuple[Layer, list[dict[str, Any]]]:
    """Check a JSON object's field names; values are validated later against the chosen model."""
    if not isinstance(data, dict):
        raise JobError("invalid_parameters", f"{where} must be a JSON object, got {type(data).__name__}",
                       details={"source": source})
    values, origins, errors = {}, {}, []
    for raw_name, value in data.items():
        name = str(raw_name).strip().lower().replace("-", "_")
        if name not in KNOWN_FIELDS:
            if not ignore_unknown:
                errors.append(_unknown(name, where))
            continue
        values[name] = value
        origins[name] = origin_of(raw_name) if origin_of else where
    for group in _EXCLUSIVE:
        both = sorted(group & values.keys())
        if len(both) > 1:
            errors.append({"field": " and ".join(both), "source": where,
                           "message": "say the same thing in two directions: set only one"})
    return Layer(source, values, origins), errors


def parse_json_document(raw: bytes, where: str) -> Any:
    """Decode a sidecar or `_defaults.json` with an error that points at the problem."""
    if len(raw) > MAX_SIDECAR_BYTES:
        raise JobError("invalid_parameters", f"{where} is {len(raw)} bytes; parameter files may have at most "
                       f"{MAX_SIDECAR_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobError("invalid_parameters", f"{where} is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise JobError("invalid_parameters", f"{where} is empty; it must hold a JSON object")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobError("invalid_parameters",
                       f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def decode_metadata_value(value: str) -> str:
    """RFC 2047 values (`=?UTF-8?B?...?=`) are how non-ASCII metadata arrives; plain ones pass through."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        return value


def deployment_layer(model_id: str, output_format: str, default_prompt: str,
                     default_params: dict[str, Any]) -> Layer:
    layer, errors = _layer_from_mapping(DEPLOYMENT, "deployment defaults (IMG2IMG_DEFAULT_PARAMS)",
                                        default_params)
    if errors:
        raise JobError("invalid_parameters", _summary(errors), details={"errors": errors})
    values = {"model_id": model_id, "output_format": output_format, **layer.values}
    origins = {"model_id": "deployment (IMG2IMG_MODEL_ID)",
               "output_format": "deployment (IMG2IMG_OUTPUT_FORMAT)", **layer.origins}
    if default_prompt and "prompt" not in values and "text_prompts" not in values:
        values["prompt"] = default_prompt
        origins["prompt"] = "deployment (IMG2IMG_DEFAULT_PROMPT)"
    return Layer(DEPLOYMENT, values, origins)


def folder_defaults_layer(data: Any, uri: str) -> Layer:
    layer, errors = _layer_from_mapping(FOLDER_DEFAULTS, f"folder defaults {uri}", data)
    if errors:
        raise JobError("invalid_parameters", _summary(errors), details={"errors": errors})
    return layer


def sidecar_layer(data: Any, uri: str) -> Layer:
    layer, errors = _layer_from_mapping(SIDECAR, f"sidecar {uri}", data)
    if errors:
        raise JobError("invalid_parameters", _summary(errors), details={"errors": errors})
    return layer


def request_layer(data: Any, where: str = "request") -> Layer:
    layer, errors = _layer_from_mapping(REQUEST, where, data)
    if errors:
        raise JobError("invalid_parameters", _summary(errors), details={"errors": errors})
    return layer


def metadata_layers(metadata: dict[str, str]) -> tuple[list[Layer], list[str]]:
    """S3 user metadata -> layers (`params` JSON first, then single keys) and the ignored key names.

    Names are case-insensitive with `-` and `_` interchangeable. Keys that are not ours are ignored
    (other tools put metadata on objects too) and listed in the record.
    """
    params_layer: list[Layer] = []
    values, origins, ignored = {}, {}, []
    for raw_name, raw_value in metadata.items():
        name = raw_name.strip().lower().replace("-", "_")
        value = decode_metadata_value(raw_value)
        header = f"metadata x-amz-meta-{raw_name.lower()}"
        if name == "params":
            data = parse_json_document(value.encode(), header)
            layer, errors = _layer_from_mapping(METADATA, header, data)
            if errors:
                raise JobError("invalid_parameters", _summary(errors), details={"errors": errors})
            params_layer.append(layer)
        elif name in KNOWN_FIELDS and name not in _STRUCTURED:
            values[name] = value
            origins[name] = header
        else:
            ignored.append(raw_name.lower())
    return params_layer + [Layer(METADATA, values, origins)], sorted(ignored)


def merge(layers: Iterable[Layer]) -> MergedParams:
    """Apply layers in order; a later layer replaces a field (and its exclusive siblings) wholesale."""
    merged = MergedParams()
    for layer in layers:
        for name, value in layer.values.items():
            origin = layer.origins.get(name, layer.source)
            if name == "text_prompts":
                positive, negative = _split_text_prompts(value, origin)
                merged.positive, merged.negative = positive, negative
                merged.origins["prompt"] = merged.origins["negative_prompt"] = origin
                continue
            if name in ("prompt", "negative_prompt"):
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise JobError("invalid_parameters", f"{name} from {origin} must be a string, got "
                                   f"{json.dumps(value)[:80]}", details={"field": name, "source": origin})
                part = {"text": value, "weight": 1.0 if name == "prompt" else -1.0}
                if name == "prompt":
                    merged.positive = [part]
                else:
                    merged.negative = [part] if value else []
                merged.origins[name] = origin
                continue
            for group in _EXCLUSIVE:
                if name in group:
                    for other in group - {name}:
                        merged.values.pop(other, None)
                        merged.origins.pop(other, None)
            merged.values[name] = value
            merged.origins[name] = origin
    return merged


def _split_text_prompts(value: Any, origin: str) -> tuple[list[dict], list[dict]]:
    """SDXL's `text_prompts`: a negative weight makes a negative prompt. Shape errors name the item."""
    if not isinstance(value, list) or not value:
        raise JobError("invalid_parameters", f"text_prompts from {origin} must be a non-empty list of "
                       '{"text": ..., "weight": ...} objects', details={"field": "text_prompts", "source": origin})
    positive, negative = [], []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or "text" not in item or set(item) - {"text", "weight"}:
            raise JobError("invalid_parameters", f"text_prompts[{i}] from {origin} must be an object with "
                           f'"text" and optional "weight", got {json.dumps(item)[:120]}',
                           details={"field": f"text_prompts[{i}]", "source": origin})
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise JobError("invalid_parameters", f"text_prompts[{i}].weight from {origin} must be a number, "
                           f"got {json.dumps(weight)}", details={"field": f"text_prompts[{i}].weight", "source": origin})
        part = {"text": item["text"], "weight": float(weight)}
        (negative if weight < 0 else positive).append(part)
    return positive, negative


# ---- validation against a model's pydantic schema -----------------------------------------------

def collect_errors(model: type[BaseModel], values: dict[str, Any], merged: MergedParams,
                   allowed: dict[str, str]) -> tuple[BaseModel | None, list[dict[str, Any]]]:
    """Validate with pydantic; each problem names the field, its source, the bad value and what is allowed."""
    from pydantic import ValidationError

    try:
        return model.model_validate(values), []
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            name = loc[0] if loc else "?"
            path = name + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
            source_name = "prompt" if name == "text_prompts" else name
            entry = {"field": path, "source": merged.origin(source_name), "message": err["msg"]}
            if err.get("type") != "missing":
                entry["value"] = err.get("input")
            if name in allowed:
                entry["allowed"] = allowed[name]
            errors.append(entry)
        return None, errors


def typed_effective(merged: MergedParams, fields: BaseModel) -> dict[str, Any]:
    """The merged parameters with validated types (metadata's "7" becomes 7) for the record."""
    typed = fields.model_dump(exclude_none=True)
    out = merged.canonical()
    out.update({k: typed[k] for k in merged.values if k in typed})
    return out


def invalid(errors: list[dict[str, Any]]) -> JobError:
    return JobError("invalid_parameters", _summary(errors), details={"errors": errors})


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        value = f" = {json.dumps(e['value'], ensure_ascii=False)[:100]}" if "value" in e else ""
        allowed = f" (allowed: {e['allowed']})" if e.get("allowed") else ""
        parts.append(f"{e['field']}{value} from {e['source']}: {e['message']}{allowed}")
    return "invalid parameters: " + "; ".join(parts)
