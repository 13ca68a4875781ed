"""Job parameters: where they come from, which source wins, and errors that say exactly what is wrong.

Sources, later overriding earlier field by field:
deployment defaults < folder `_defaults.json` (root first, nearest last) < S3 metadata < sidecar JSON
(< an API or event request's own parameters). Each model adapter validates the merged values against
its own rules with `collect_errors`.

Totality: for any user input the result is a valid job or a `JobError` (`invalid_parameters`, or
`missing_parameters` from an adapter) whose `details["errors"]` is a list of
{field, source, message, value?, allowed?}. What no later step could handle (text that is not Unicode,
NaN/Infinity, absurd nesting or numbers, non-JSON values, malformed prompts) is refused when a `Layer`
is built, so merging, hashing and record writing never see it.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import threading
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from typing import TYPE_CHECKING, Any

from ..operations import OPERATION_FIELDS, SERVICE_FIELDS
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
SDXL_MASK_FIELDS = ("mask_source",)
SD35_FIELDS = ("prompt", "negative_prompt", "strength", "mode", "seed", "output_format")
OUR_FIELDS = ("model_id", "output_format", "fit", "restore_aspect", "strict", "prompt_language")
# Fields the pipeline itself reads (the model adapters never see them).
PIPELINE_FIELDS = ("prompt_language",)
KNOWN_FIELDS = frozenset(SDXL_FIELDS + SDXL_MASK_FIELDS + SD35_FIELDS + SERVICE_FIELDS + OUR_FIELDS
                         + OPERATION_FIELDS)
DEPLOYMENT_PREFIX = "deployment"  # every origin of a deployment default starts so (see deployment_layer)
# Fields metadata cannot carry as a single string value (they go in `params` or a sidecar).
_STRUCTURED = frozenset({"text_prompts", "extras"})
# The image travels as the object itself, never as a parameter.
_IMAGE_FIELDS = frozenset({"init_image", "image", "mask_image"})
# Setting one member of a group replaces the others: they say the same thing in two vocabularies.
_EXCLUSIVE = ({"image_strength", "strength"},)
MAX_SIDECAR_BYTES = 256 * 1024
# No parameter needs more; deeper documents only exhaust recursion in json and pydantic.
MAX_DEPTH = 20
# No parameter of any model takes larger integers; larger ones overflow floats (OverflowError) and
# Python's integer/string conversion limit (ValueError) in hashing and record writing.
MAX_INT = 2 ** 64
MAX_ERRORS_PER_FIELD = 5  # a list of 100 000 NaNs is one problem, not 100 000 lines
DOCUMENT = "(document)"   # the `field` of an error about a whole file or header, not one of its fields
_SURROGATE = re.compile("[\ud800-\udfff]")


def entry(name: str, where: str, message: str, **extra: Any) -> dict[str, Any]:
    """One problem, in the shape every parameter error has."""
    return {"field": name, "source": where, "message": message, **extra}


def invalid(errors: list[dict[str, Any]], message: str | None = None) -> JobError:
    return JobError("invalid_parameters", message or _summary(errors), details={"errors": errors})


def missing_prompt(merged: MergedParams, message: str) -> JobError:
    """No positive prompt: the error names where the (empty or negative-only) prompt came from, if anywhere."""
    return JobError("missing_parameters", message, details={"errors": [
        entry("prompt", merged.origin("prompt"), "no positive prompt text from any source")]})


def _printable(text: str) -> str:
    """Text that is safe in a record even when the input was not: lone surrogates become `\\udxxx`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_problem(text: str) -> str | None:
    match = _SURROGATE.search(text)
    if match is None:
        return None
    return (f"is not valid Unicode text: lone surrogate {_printable(match.group())} at character "
            f"{match.start()} (send UTF-8, or a \\uXXXX escape pair)")


def json_errors(name: str, value: Any, where: str) -> list[dict[str, Any]]:
    """What in one field's value no later step could handle. Iterative: depth cannot blow the stack."""
    errors: list[dict[str, Any]] = []
    stack: list[tuple[str, Any, int]] = [(name, value, 2)]  # the document object itself is level 1
    while stack and len(errors) < MAX_ERRORS_PER_FIELD:
        path, v, depth = stack.pop()
        if isinstance(v, (dict, list)) and depth > MAX_DEPTH:
            errors.append(entry(path, where, f"is nested more than {MAX_DEPTH} levels deep"))
        elif isinstance(v, dict):
            children = []
            for key, item in v.items():
                if not isinstance(key, str):
                    errors.append(entry(path, where, f"has a key that is not a string ({type(key).__name__})"))
                elif (problem := _text_problem(key)) is not None:
                    errors.append(entry(f"{path}.{_printable(key)}", where, "name " + problem))
                else:
                    children.append((f"{path}.{key}", item, depth + 1))
            stack.extend(reversed(children))
        elif isinstance(v, list):
            stack.extend(reversed([(f"{path}[{i}]", item, depth + 1) for i, item in enumerate(v)]))
        elif isinstance(v, str):
            if (problem := _text_problem(v)) is not None:
                errors.append(entry(path, where, problem))
        elif v is None or isinstance(v, bool):
            pass
        elif isinstance(v, int):
            if abs(v) > MAX_INT:
                errors.append(entry(path, where, f"is an integer of {v.bit_length()} bits; no parameter takes "
                                                 f"integers beyond ±2**64"))
        elif isinstance(v, float):
            if not math.isfinite(v):
                errors.append(entry(path, where, f"is {v}, not a finite number (JSON has no NaN or Infinity; "
                                                 "numbers must be within ±1.7e308)"))
        else:
            errors.append(entry(path, where, f"is not a JSON value (got {type(v).__name__})"))
    return errors


# ---- the prompt fields' shapes: merge relies on them ---------------------------------------------

def _text_or_none(name: str, value: Any, where: str) -> list[dict[str, Any]]:
    if value is None or isinstance(value, str):
        return []
    return [entry(name, where, "must be a string", value=value)]


def _model_id(name: str, value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, str) and value.strip():
        return []
    return [entry(name, where, "must be a model id string, e.g. stability.sd3-5-large-v1:0", value=value)]


def _name(name: str, value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, str) and value.strip():
        return []
    return [entry(name, where, "must be a non-empty string", value=value)]


def _text_prompts(name: str, value: Any, where: str) -> list[dict[str, Any]]:
    """SDXL's `text_prompts`: a non-empty list of {"text": str, "weight": number}. Errors name the item."""
    if not isinstance(value, list) or not value:
        return [entry(name, where, 'must be a non-empty list of {"text": ..., "weight": ...} objects', value=value)]
    errors = []
    for i, item in enumerate(value):
        at = f"{name}[{i}]"
        if not isinstance(item, dict) or "text" not in item or set(item) - {"text", "weight"}:
            errors.append(entry(at, where, 'must be an object with "text" and optional "weight"', value=item))
            continue
        if not isinstance(item["text"], str):
            errors.append(entry(f"{at}.text", where, "must be a string", value=item["text"]))
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            errors.append(entry(f"{at}.weight", where, "must be a number", value=weight))
    return errors


_SHAPES: dict[str, Callable[[str, Any, str], list[dict[str, Any]]]] = {
    "prompt": _text_or_none, "negative_prompt": _text_or_none, "text_prompts": _text_prompts,
    "model_id": _model_id, "operation": _name,
}


def value_errors(values: dict[str, Any], origins: dict[str, str], source: str) -> list[dict[str, Any]]:
    """Every problem of a layer's values that must not travel further (see the module docstring)."""
    errors = []
    for name, value in values.items():
        where = origins.get(name, source)
        if not isinstance(name, str) or _text_problem(name):
            errors.append(entry(_printable(str(name)), where, "is not a valid parameter name"))
            continue
        found = json_errors(name, value, where)
        if not found and name in _SHAPES:
            found = _SHAPES[name](name, value, where)
        errors += found
    return errors


@dataclass(frozen=True)
class Layer:
    """Parameters from one source. `origins` says, per field, exactly where it came from.

    Building one checks its values (`value_errors`), so no layer can carry what merging, hashing
    or writing a record would choke on; every source's constructor below reports them with its
    other problems at once."""

    source: str
    values: dict[str, Any]
    origins: dict[str, str]

    def __post_init__(self) -> None:
        errors = value_errors(self.values, self.origins, self.source)
        if errors:
            raise invalid(errors)


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
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def without(merged: MergedParams, names: Iterable[str]) -> MergedParams:
    """The merged parameters minus these fields (the pipeline's own, before a model adapter sees them)."""
    drop = set(names)
    return MergedParams({k: v for k, v in merged.values.items() if k not in drop},
                        {k: v for k, v in merged.origins.items() if k not in drop},
                        merged.positive, merged.negative)


def _unknown(name: str, where: str) -> dict[str, Any]:
    close = difflib.get_close_matches(name, sorted(KNOWN_FIELDS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if name in _IMAGE_FIELDS:
        hint = "; the image is the uploaded object itself, remove this field"
    return entry(name or repr(name), where, f"unknown parameter {name!r}{hint}")


def _normal_name(raw: str) -> str:
    """Names are case-insensitive, with `-` and `_` interchangeable, in every source."""
    return raw.strip().lower().replace("-", "_")


def _layer_from_mapping(source: str, where: str, data: Any) -> Layer:
    """Check a JSON object's field names and values; all problems are reported at once."""
    if not isinstance(data, dict):
        message = f"{where} must be a JSON object, got {type(data).__name__}"
        raise invalid([entry(DOCUMENT, where, "must be a JSON object", value=type(data).__name__)], message)
    values, spelled, errors = {}, {}, []
    for raw_name, value in data.items():
        if not isinstance(raw_name, str) or _text_problem(raw_name):
            errors.append(entry(_printable(str(raw_name)), where, "is not a valid parameter name"))
            continue
        name = _normal_name(raw_name)
        if name not in KNOWN_FIELDS:
            errors.append(_unknown(name, where))
            continue
        if name in spelled:
            errors.append(entry(name, where, f"is given twice (as {spelled[name]!r} and {raw_name!r}): "
                                             "set it once"))
            continue
        values[name], spelled[name] = value, raw_name
    for group in _EXCLUSIVE:
        both = sorted(group & values.keys())
        if len(both) > 1:
            errors.append(entry(" and ".join(both), where, "say the same thing in two directions: set only one"))
    origins = dict.fromkeys(values, where)
    errors += value_errors(values, origins, where)
    if errors:
        raise invalid(errors)
    return Layer(source, values, origins)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json_text(text: str, where: str) -> Any:
    """Decode JSON text strictly, with an error that points at the problem.

    Duplicate keys are refused (which one would win is a guess). NaN/Infinity parse here and are
    refused by `json_errors` when the layer is built, so that error can name the field."""
    def fail(message: str) -> JobError:
        return invalid([entry(DOCUMENT, where, message)], f"{where} {message}")

    if not text.strip():
        raise fail("is empty; it must hold a JSON object")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise fail(f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _DuplicateKey as exc:
        key = _printable(str(exc))
        raise fail(f"has the key {key!r} twice in one object; set it once") from None
    except RecursionError:
        raise fail(f"is nested far too deeply (parameters nest at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit conversion limit
        raise fail(f"is not usable JSON: {exc}") from None


def parse_json_document(raw: bytes, where: str) -> Any:
    """Decode a sidecar or `_defaults.json` (UTF-8, optional BOM, at most MAX_SIDECAR_BYTES)."""
    if len(raw) > MAX_SIDECAR_BYTES:
        raise invalid([entry(DOCUMENT, where, f"is {len(raw)} bytes; at most {MAX_SIDECAR_BYTES} are allowed")],
                      f"{where} is {len(raw)} bytes; parameter files may have at most {MAX_SIDECAR_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise invalid([entry(DOCUMENT, where, f"is not UTF-8 text (byte {exc.start})")],
                      f"{where} is not UTF-8 text (byte {exc.start})") from None
    return parse_json_text(text, where)


def decode_metadata_value(value: str, name: str = "?", where: str = "metadata") -> str:
    """RFC 2047 values (`=?UTF-8?B?...?=`) are how non-ASCII metadata arrives; plain ones pass through.

    A value with an encoded word that does not decode (bad base64, unknown charset, bytes invalid in
    it) is an `invalid_parameters` error, not passed through: its sender meant it encoded, and the raw
    `=?...?=` text would silently become a prompt. Text that merely contains `=?` is not an encoded word
    and passes through. Any exception of the stdlib decoders counts: they raise a zoo of types
    (HeaderParseError, LookupError, UnicodeError, ...) for user-controlled bytes."""
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
        if any(charset == "unknown-8bit" for _, charset in parts):  # would decode to U+FFFD: guessed text
            raise LookupError("charset unknown-8bit")
        return str(make_header(parts))
    except Exception as exc:
        raise invalid([entry(name, where, f"is not a decodable RFC 2047 encoded value ({type(exc).__name__}); "
                                          "encode it as =?UTF-8?B?<base64 of the UTF-8 text>?=",
                             value=_printable(value))]) from None


def deployment_layer(model_id: str, output_format: str, default_prompt: str,
                     default_params: dict[str, Any]) -> Layer:
    layer = _layer_from_mapping(DEPLOYMENT, "deployment defaults (IMG2IMG_DEFAULT_PARAMS)", default_params)
    values = {"model_id": model_id, "output_format": output_format, **layer.values}
    origins = {"model_id": "deployment (IMG2IMG_MODEL_ID)",
               "output_format": "deployment (IMG2IMG_OUTPUT_FORMAT)", **layer.origins}
    if default_prompt and "prompt" not in values and "text_prompts" not in values:
        values["prompt"] = default_prompt
        origins["prompt"] = "deployment (IMG2IMG_DEFAULT_PROMPT)"
    return Layer(DEPLOYMENT, values, origins)


def folder_defaults_layer(data: Any, uri: str) -> Layer:
    return _layer_from_mapping(FOLDER_DEFAULTS, f"folder defaults {uri}", data)


def sidecar_layer(data: Any, uri: str) -> Layer:
    return _layer_from_mapping(SIDECAR, f"sidecar {uri}", data)


def request_layer(data: Any, where: str = "request") -> Layer:
    return _layer_from_mapping(REQUEST, where, data)


def metadata_layers(metadata: dict[str, str]) -> tuple[list[Layer], list[str]]:
    """S3 user metadata -> layers (`params` JSON first, then single keys) and the ignored key names.

    Names are case-insensitive with `-` and `_` interchangeable. Keys that are not ours are ignored
    (other tools put metadata on objects too) and listed in the record. Single values stay strings
    here; `collect_errors` types them by the one rule in `parse_text`. All problems are raised at once.
    """
    params_layers: list[Layer] = []
    values, origins, spelled, ignored, errors = {}, {}, {}, [], []
    for raw_name, raw_value in metadata.items():
        key = _printable(str(raw_name)).lower()
        name = _normal_name(key)
        header = f"metadata x-amz-meta-{key}"
        if name != "params" and (name not in KNOWN_FIELDS or name in _STRUCTURED):
            ignored.append(key)
            continue
        if name in spelled:
            errors.append(entry(name, header, f"is given twice (as x-amz-meta-{spelled[name]} and "
                                              f"x-amz-meta-{key}): set it once"))
            continue
        spelled[name] = key
        if not isinstance(raw_value, str):
            errors.append(entry(name, header, f"must be a string, got {type(raw_value).__name__}"))
            continue
        try:
            value = decode_metadata_value(raw_value, name, header)
            if name == "params":
                params_layers.append(_layer_from_mapping(METADATA, header, parse_json_text(value, header)))
                continue
        except JobError as exc:
            errors += exc.details["errors"]
            continue
        values[name], origins[name] = value, header
    errors += value_errors(values, origins, METADATA)
    if errors:
        raise invalid(errors)
    return params_layers + [Layer(METADATA, values, origins)], sorted(ignored)


def merge(layers: Iterable[Layer]) -> MergedParams:
    """Apply layers in order; a later layer replaces a field (and its exclusive siblings) wholesale.

    Never raises: every `Layer` was checked when it was built."""
    merged = MergedParams()
    for layer in layers:
        for name, value in layer.values.items():
            origin = layer.origins.get(name, layer.source)
            if name == "text_prompts":
                merged.positive, merged.negative = _split_text_prompts(value)
                merged.origins["prompt"] = merged.origins["negative_prompt"] = origin
                continue
            if name in ("prompt", "negative_prompt"):
                if value is None:
                    continue
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


def _split_text_prompts(value: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """A negative weight makes a negative prompt (shape checked by `_text_prompts`)."""
    positive, negative = [], []
    for item in value:
        weight = float(item.get("weight", 1.0))
        (negative if weight < 0 else positive).append({"text": item["text"], "weight": weight})
    return positive, negative


# ---- typing text values: one rule for every source -------------------------------------------------

_INT_TEXT = re.compile(r"[+-]?[0-9]{1,20}")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]{1,40}(\.[0-9]{0,40})?|\.[0-9]{1,40})([eE][+-]?[0-9]{1,3})?")


def _int_text(text: str) -> int:
    if not _INT_TEXT.fullmatch(text):
        raise ValueError("must be an integer written in digits, e.g. 7")
    return int(text)


def _float_text(text: str) -> float:
    number = float(text) if _FLOAT_TEXT.fullmatch(text) else math.nan
    if not math.isfinite(number):
        raise ValueError("must be a finite number written in decimal, e.g. 0.5 or 7")
    return number


def _bool_text(text: str) -> bool:
    try:
        return {"true": True, "false": False}[text.lower()]
    except KeyError:
        raise ValueError("must be true or false") from None


# Metadata can only carry text, so a number or boolean arrives as "7", "0.5" or "true". The same text
# means the same thing from any source (a sidecar's "7" too); what JSON types say is never stretched:
# true is not 1, 1.5 is not an integer, "yes" is not a boolean.
TEXT_PARSERS: dict[type, Callable[[str], Any]] = {int: _int_text, float: _float_text, bool: _bool_text}


def parse_text(kind: type, text: str) -> Any:
    """`text` as a value of `kind` (int, float or bool) by the one rule; ValueError says what is allowed."""
    return TEXT_PARSERS[kind](text.strip())


def strict_of(merged: MergedParams) -> bool:
    """Only an explicit false (or the text "false", by the one rule of `parse_text`) relaxes a job.

    Anything else that is not a boolean keeps it strict, and `collect_errors` reports it."""
    raw = merged.values.get("strict", True)
    if isinstance(raw, str):
        try:
            raw = parse_text(bool, raw)
        except ValueError:
            return True
    return raw is not False


def _kind(model: type[BaseModel], name: str) -> type | None:
    """The scalar type (int, float, bool) a model declares for a field, if any: the fact has one home."""
    info = model.model_fields.get(name)
    if info is None:
        return None
    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return annotation if annotation in TEXT_PARSERS else None


# ---- validation against a model's pydantic schema -----------------------------------------------

def collect_errors(model: type[BaseModel], values: dict[str, Any], merged: MergedParams,
                   allowed: dict[str, str]) -> tuple[BaseModel | None, list[dict[str, Any]]]:
    """Validate strictly; each problem names the field, its source, the value as given and what is allowed.

    Text for an int/float/bool field is typed by `parse_text` first; everything else must already
    have its JSON type (pydantic's strict mode: no true-as-1, no 1.5-as-int)."""
    from pydantic import ValidationError

    typed, given, errors = dict(values), {}, []
    for name, value in values.items():
        kind = _kind(model, name) if isinstance(value, str) else None
        if kind is None:
            continue
        del typed[name]
        try:
            typed[name], given[name] = parse_text(kind, value), value
        except ValueError as exc:
            errors.append(_with_allowed(entry(name, merged.origin(name), str(exc), value=value), allowed))
    try:
        fields = model.model_validate(typed, strict=True)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            name = loc[0] if loc else "?"
            path = name + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
            source_name = "prompt" if name == "text_prompts" else name
            problem = entry(path, merged.origin(source_name), err["msg"])
            if err.get("type") != "missing":
                problem["value"] = given.get(name, err.get("input")) if len(loc) == 1 else err.get("input")
            errors.append(_with_allowed(problem, allowed))
        return None, errors
    return (None, errors) if errors else (fields, [])


def _with_allowed(problem: dict[str, Any], allowed: dict[str, str]) -> dict[str, Any]:
    name = problem["field"].split("[")[0].split(".")[0]
    if name in allowed:
        problem["allowed"] = allowed[name]
    return problem


def typed_effective(merged: MergedParams, fields: BaseModel) -> dict[str, Any]:
    """The merged parameters with validated types (metadata's "7" becomes 7) for the record."""
    typed = fields.model_dump(exclude_none=True)
    out = merged.canonical()
    out.update({k: typed[k] for k in merged.values if k in typed})
    return out


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        value = f" = {json.dumps(e['value'], ensure_ascii=False)[:100]}" if "value" in e else ""
        allowed = f" (allowed: {e['allowed']})" if e.get("allowed") else ""
        parts.append(f"{e['field']}{value} from {e['source']}: {e['message']}{allowed}")
    return "invalid parameters: " + "; ".join(parts)


# (key, raw bytes, what was read) of each folder `_defaults.json` found, root first.
DefaultsChain = tuple[tuple[str, bytes, Any], ...]


class FolderDefaultsCache:
    """Folder defaults as one sandbox last read them: one snapshot of the whole chain per folder, kept
    `ttl` seconds, so a change takes effect within `ttl` and a job never mixes levels read at different
    times. Absence is cached too (the common case: no `_defaults.json` at most levels). Each entry keeps
    the objects as read (`ObjectInfo`, with its version), never a re-read under the same name."""

    MAX_FOLDERS = 1024  # a bound on memory: the oldest snapshot goes first

    def __init__(self, ttl: float, clock: Callable[[], float]):
        self.ttl = ttl
        self.clock = clock
        self._chains: dict[tuple[str, tuple[str, ...]], tuple[float, DefaultsChain]] = {}
        self._lock = threading.Lock()  # a batch's records resolve in threads

    def chain(self, bucket: str, chain: list[str],
              read: Callable[[str, str], tuple[bytes, Any] | None]) -> DefaultsChain:
        """The `_defaults.json` objects found along `chain`: cached, or all read now by `read(bucket, key)`
        (a read that raises caches nothing)."""
        entry = (bucket, tuple(chain))
        now = self.clock()
        with self._lock:
            cached = self._chains.get(entry)
        if cached is not None and 0 <= now - cached[0] < self.ttl:
            return cached[1]
        found = []
        for key in chain:
            got = read(bucket, key)
            if got is not None:
                found.append((key, got[0], got[1]))
        snapshot = tuple(found)
        with self._lock:
            self._chains.pop(entry, None)
            self._chains[entry] = (now, snapshot)
            while len(self._chains) > self.MAX_FOLDERS:
                self._chains.pop(next(iter(self._chains)))
        return snapshot

    def forget(self, bucket: str, defaults_key: str) -> None:
        """A `_defaults.json` changed: every snapshot whose chain includes it is read again next time."""
        with self._lock:
            for entry in [e for e in self._chains if e[0] == bucket and defaults_key in e[1]]:
                del self._chains[entry]
