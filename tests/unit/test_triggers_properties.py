"""Properties of the edge parser (core/triggers.py) over arbitrary messages: it is total.

Every message, however broken, ends as Triggers (each with a bucket and a key, and no error or a
permanent one the pipeline can record) or as UnreadableMessage; never another exception. An event that
names a valid bucket and key always yields its trigger, and the ImageGenerationRequested schema in docs/
accepts exactly the details the parser accepts.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_triggers import AWS_EVENTBRIDGE_OBJECT_CREATED, AWS_REQUESTED, AWS_S3_NOTIFICATION, AWS_TEST_EVENT, sns

from img2img.core.errors import CODES, JobError
from img2img.core.triggers import Trigger, UnreadableMessage, parse_body, parse_message

_spec = importlib.util.spec_from_file_location(
    "schema_check", Path(__file__).resolve().parents[1] / "handlers" / "schema_check.py")
schema_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(schema_check)

JOB_MESSAGE = {"type": "img2img.job", "job_id": "api-0123abcd", "origin": "api",
               "source": {"bucket": "my-input", "key": "api/api-0123abcd/input.png", "version_id": "v1"},
               "params": {"prompt": "x", "seed": 3}, "output": {"prefix": "api/api-0123abcd/"}}
SIDECAR_MESSAGE = {"type": "img2img.sidecar-check", "bucket": "my-input", "key": "cats/a.jpg", "version_id": "v3",
                   "etag": '"e"'}
ENVELOPES = [AWS_S3_NOTIFICATION, AWS_TEST_EVENT, AWS_EVENTBRIDGE_OBJECT_CREATED, AWS_REQUESTED, JOB_MESSAGE,
             SIDECAR_MESSAGE, sns(AWS_S3_NOTIFICATION), sns(AWS_TEST_EVENT)]

# Text as JSON can carry it: lone surrogates included (json.loads('"\\ud800"') is one).
any_text = st.text(max_size=30)
scalars = st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats() | any_text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)
# Words the parser dispatches on, so that random messages reach every branch.
DISPATCH = {"Type": st.just("Notification"), "Message": st.builds(json.dumps, json_values) | json_values,
            "Event": st.just("s3:TestEvent"), "Records": json_values | st.lists(json_values, max_size=3),
            "source": st.sampled_from(["aws.s3", "s3://my-input/a.png", "my.app"]) | json_values,
            "detail-type": st.sampled_from(["Object Created", "ImageGenerationRequested", "Object Deleted"])
            | json_values, "detail": json_values, "type": st.sampled_from(["img2img.job", "img2img.sidecar-check"]),
            "bucket": json_values, "key": json_values}
dispatchy = st.fixed_dictionaries({}, optional=DISPATCH)


# ---- mutations of real envelopes ----------------------------------------------------------------------

def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside `value` (dict keys and list indexes), outermost first."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found.append(prefix + (k,))
        found += paths(v, prefix + (k,))
    return found


def mutate(value: Any, path: tuple, how: str, new: Any) -> Any:
    """A copy of `value` with the field at `path` dropped, or replaced by `new` (retyped or not)."""
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    head = path[0]
    if len(path) == 1 and how == "drop":
        del copy[head]
    else:
        copy[head] = mutate(copy[head], path[1:], how, new)
    return copy


def replacement_like(old: Any) -> st.SearchStrategy:
    """A value of the same JSON type as `old` (a plausible but wrong value) or any other (retyped)."""
    same = {str: any_text, int: st.integers(-10, 2**40), bool: st.booleans(), float: st.floats(),
            dict: st.dictionaries(any_text, json_values, max_size=3), list: st.lists(json_values, max_size=3)}
    return same.get(type(old), json_values) | json_values


@st.composite
def mutated(draw, envelopes: st.SearchStrategy | None = None, protected=lambda path: False,
            wraps=("none", "sns", "nest")) -> Any:
    message = draw(st.sampled_from(ENVELOPES) if envelopes is None else envelopes)
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p in paths(message) if not protected(p)]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        how = draw(st.sampled_from(["drop", "replace"]))
        old = message
        for k in path:
            old = old[k]
        message = mutate(message, path, how, draw(replacement_like(old)))
    wrap = draw(st.sampled_from(wraps))
    if wrap == "sns":
        message = sns(message)
    elif wrap == "nest":
        message = {draw(st.sampled_from(["Message", "detail", "Records", "body"])): message}
    return message


messages = json_values | dispatchy | mutated()
# Parsing is cheap (tens of microseconds): search wider than the profile's default in `ci`.
wide = settings(max_examples=max(100, settings.default.max_examples))


# ---- the invariant ------------------------------------------------------------------------------------

def utf8_json(value: Any) -> None:
    json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


def assert_total(message: Any) -> list[Trigger] | UnreadableMessage:
    """parse_message's outcome, after checking it is one the pipeline and the worker can handle."""
    try:
        triggers = parse_message(message)
    except UnreadableMessage as exc:
        assert exc.code == "invalid_parameters" and not exc.retryable
        utf8_json({"message": exc.message, **exc.details})  # it can be logged as JSON
        return exc
    assert isinstance(triggers, list)
    for t in triggers:
        assert isinstance(t, Trigger) and t.kind in ("object", "job", "check")
        assert isinstance(t.bucket, str) and t.bucket and isinstance(t.key, str) and t.key
        assert len(t.key.encode("utf-8")) <= 1024
        for text in (t.bucket, t.version_id, t.etag, t.job_id, t.origin):
            assert text is None or (isinstance(text, str) and text.encode("utf-8"))
        assert t.size is None or (type(t.size) is int and t.size >= 0)
        assert t.params is None or isinstance(t.params, dict)
        assert t.output is None or (set(t.output) == {"prefix"} and isinstance(t.output["prefix"], str))
        if t.error is not None:
            assert isinstance(t.error, JobError) and not isinstance(t.error, UnreadableMessage)
            assert not t.error.retryable and CODES[t.error.code].kind == "outcome"
            assert t.error.details["errors"] and all({"field", "source", "message"} <= set(e)
                                                     for e in t.error.details["errors"])
            utf8_json(t.error.as_record())  # the failure record can be written
        else:
            if t.job_id:
                assert t.job_id.isascii()   # S3 metadata
            if t.output and t.output["prefix"]:
                assert t.output["prefix"].endswith("/") and not t.output["prefix"].startswith("/")
    return triggers


@wide
@given(messages)
def test_every_message_is_triggers_or_unreadable_and_its_body_parses_alike(message):
    outcome = assert_total(message)
    again = _outcome(lambda: parse_body(json.dumps(message)))
    if isinstance(outcome, UnreadableMessage) or _has_non_finite(message):  # NaN != NaN
        assert type(again) is type(outcome)
    else:
        assert again == outcome


@wide
@given(mutated())
def test_every_mutation_of_a_real_envelope_is_triggers_or_unreadable(message):
    assert_total(message)


RETYPED = [None, "", "text", "\udc80", "k" * 1025, "ü" * 300, "%C3", 0, -1, 1.5, float("nan"), True, [], [{}], {},
           {"name": {}}]


def test_every_field_of_every_real_envelope_dropped_or_retyped():
    """Systematically, not by chance: each field of each envelope dropped or replaced by each JSON type."""
    count = 0
    for envelope in ENVELOPES:
        for path in paths(envelope):
            for how, new in [("drop", None)] + [("replace", v) for v in RETYPED]:
                broken = mutate(envelope, path, how, new)
                for message in (broken, sns(broken)):
                    assert_total(message)
                    count += 1
    assert count > 3000


@wide
@given(st.text(max_size=200) | st.binary(max_size=50).map(lambda b: b.decode("latin-1")))
def test_any_text_body_is_triggers_or_unreadable(body):
    try:  # noqa: SIM105
        parse_body(body)
    except UnreadableMessage:
        pass


def _outcome(call):
    try:
        return call()
    except UnreadableMessage as exc:
        return exc


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


# ---- valid bucket and key: always a trigger -----------------------------------------------------------

bucket_names = st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,20}(\.[a-z0-9-]{1,10})?[a-z0-9]\Z").filter(
    lambda b: not b[-2:].startswith("."))
# Keys rich in what form-URL-encoding changes: '%', '+', spaces, non-ASCII.
object_keys = st.lists(st.sampled_from(["%2B", "%", "%41", "+", " ", "/", "ü", "猫", "a.png"])
                       | st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60).map("".join)


def with_source(envelope: str, bucket: str, key: str) -> dict:
    """A real envelope naming bucket/key, the key encoded as that envelope encodes it."""
    if envelope == "s3":
        message = json.loads(json.dumps(AWS_S3_NOTIFICATION))
        message["Records"][0]["s3"]["bucket"]["name"] = bucket
        message["Records"][0]["s3"]["object"]["key"] = quote_plus(key, safe="/")
    elif envelope == "eventbridge":
        message = json.loads(json.dumps(AWS_EVENTBRIDGE_OBJECT_CREATED))
        message["detail"]["bucket"]["name"] = bucket
        message["detail"]["object"]["key"] = quote_plus(key, safe="/")
    elif envelope == "requested":
        message = {**AWS_REQUESTED, "detail": {**AWS_REQUESTED["detail"], "source": f"s3://{bucket}/{key}"}}
    elif envelope == "job":
        message = {**JOB_MESSAGE, "source": {"bucket": bucket, "key": key, "version_id": "v1"}}
    else:
        message = {**SIDECAR_MESSAGE, "bucket": bucket, "key": key}
    return message


# Per envelope, the fields that say what the message is and which object it names; the rest may be anything.
IDENTITY = {
    "s3": [("Records", 0, "eventName"), ("Records", 0, "s3", "bucket", "name"), ("Records", 0, "s3", "object", "key")],
    "eventbridge": [("source",), ("detail-type",), ("detail", "bucket", "name"), ("detail", "object", "key")],
    "requested": [("source",), ("detail-type",), ("detail", "source")],
    "job": [("type",), ("source", "bucket"), ("source", "key")],
    "sidecar": [("type",), ("bucket",), ("key",)],
}


def on_identity(envelope: str):
    """Whether a path leads to (or is) one of the envelope's identity fields: those are not mutated."""
    return lambda path: any(full[:len(path)] == path for full in IDENTITY[envelope])


@wide
@given(st.sampled_from(["s3", "eventbridge", "requested", "job", "sidecar"]), bucket_names, object_keys,
       st.data())
def test_an_event_naming_a_valid_bucket_and_key_always_yields_its_trigger(envelope, bucket, key, data):
    message = with_source(envelope, bucket, key)
    [trigger] = assert_total(message)
    assert (trigger.bucket, trigger.key, trigger.error) == (bucket, key, None)  # decoded exactly once
    # Whatever else is wrong in it, the message still yields the trigger for that object.
    broken = data.draw(mutated(st.just(message), protected=on_identity(envelope), wraps=("none", "sns")))
    outcome = assert_total(broken)
    assert not isinstance(outcome, UnreadableMessage), outcome.message
    [trigger] = outcome
    assert (trigger.bucket, trigger.key) == (bucket, key)


@given(bucket_names, st.lists(st.sampled_from(["ObjectCreated:Put", "ObjectCreated:Copy", "ObjectRemoved:Delete",
                                               "ObjectRestore:Completed"]), min_size=1, max_size=4), object_keys)
def test_every_object_created_record_yields_a_trigger_in_order(bucket, events, key):
    record = AWS_S3_NOTIFICATION["Records"][0]
    records = [{**record, "eventName": e, "s3": {**record["s3"], "bucket": {"name": bucket},
                                                 "object": {"key": quote_plus(f"{i}/{key}")}}}
               for i, e in enumerate(events)]
    triggers = parse_message({"Records": records})
    assert [t.key for t in triggers] == [f"{i}/{key}" for i, e in enumerate(events) if e.startswith("ObjectCreated")]


# ---- the documented schema accepts exactly what the parser accepts --------------------------------------

SCHEMA = schema_check.load("ImageGenerationRequested")
# No trailing newline: the schema's patterns are ECMA-262, where `$` is the end; schema_check uses
# Python's re.search, whose `$` also matches before a final newline.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).filter(lambda s: not s.endswith("\n"))
maybe_bucket = bucket_names | st.sampled_from(["My_Bucket", "ab", "a..b", "192.168.1.1", "-ab", "x" * 64]) | texts
maybe_key = object_keys.filter(lambda s: not s.endswith("\n")) | st.just("") | json_values
maybe_source = (st.builds(lambda b, k: f"s3://{b}/{k}", maybe_bucket, maybe_key.filter(lambda k: isinstance(k, str)))
                | st.fixed_dictionaries({"bucket": maybe_bucket, "key": maybe_key},
                                        optional={"version_id": st.none() | texts | json_values,
                                                  "versionId": texts})
                | json_values)
maybe_prefix = st.sampled_from(["", "a/", "a", "/a/", "a/../b/", "./", "a/./", "..", "tab\t/", "x" * 300]) | texts
maybe_fields = {
    "params": st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=2) | json_values,
    "job_id": st.none() | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z") | texts | json_values,
    "output": st.none() | st.fixed_dictionaries({}, optional={"prefix": st.none() | maybe_prefix,
                                                              "bucket": texts}) | json_values,
    "parms": json_values,
}


# A valid detail, then up to two fields made wrong in one of the ways the docs forbid.
VALID_DETAIL = st.fixed_dictionaries(
    {"source": st.builds(lambda b, k: f"s3://{b}/{k}", bucket_names, object_keys)
     | st.fixed_dictionaries({"bucket": bucket_names, "key": object_keys}, optional={"version_id": st.none()
                                                                                    | st.just("v1")})},
    optional={"params": st.none() | st.just({"prompt": "x"}), "job_id": st.none() | st.just("sku-42.v2"),
              "output": st.none() | st.fixed_dictionaries({}, optional={"prefix": st.sampled_from(["", "a/", "a"])})})
# The ways the docs forbid, field by field (each checked below, and mixed in by the property).
WRONG_VALUES: dict[str, list] = {
    "source": ["s3://My_Bucket/a.png", "s3://ab/a.png", "s3://a..b/k", "s3://192.168.1.1/k", "s3://b-b/",
               "https://x/y", "s3://", {"bucket": "my-input"}, {"key": "k"},
               {"bucket": "my-input", "key": "k", "versionId": "v"},
               {"bucket": "my-input", "key": "k", "version_id": ""},
               {"bucket": "my-input", "key": "k", "version_id": "a\x00"},
               {"bucket": "my-input", "key": "k", "version_id": 3},
               {"bucket": "UPPER", "key": "k"}, {"bucket": "my-input", "key": ""}, 7, None],
    "params": [[], "prompt=x", 1, True],
    "job_id": ["", "-a", "a b", "ü", "a" * 129, 5, "a/b", "a\tb"],
    "output": ["x/", [], {"prefix": "/a"}, {"prefix": "a/../b"}, {"prefix": ".."}, {"prefix": "./"},
               {"prefix": "a/./b"}, {"prefix": "a\x01"}, {"prefix": "b\x85/"}, {"prefix": "x" * 257},
               {"prefix": 3}, {"bucket": "b"}, {"prefix": "a/", "x": 1}],
    "parms": [{"prompt": "x"}],
}
RIGHT_VALUES: dict[str, list] = {
    "source": ["s3://my-input/a.png", "s3://a.b-c/x/y z+%20.png", {"bucket": "my-input", "key": "k"},
               {"bucket": "my-input", "key": "猫", "version_id": None}, {"bucket": "abc", "key": "\n", "version_id": "v"}],  # noqa: E501
    "params": [None, {}, {"prompt": "x"}],
    "job_id": [None, "a", "A" * 128, "sku-42.v2_x"],
    "output": [None, {}, {"prefix": None}, {"prefix": ""}, {"prefix": "a"}, {"prefix": "a/b/"},
               {"prefix": "..a/b./"}, {"prefix": "é" * 128}, {"prefix": "x" * 256}],
}
WRONG = {field: st.sampled_from(values) | (texts if field in ("job_id", "output") else json_values)
         for field, values in WRONG_VALUES.items()}


@pytest.mark.parametrize("field, value", [(f, v) for f, vs in WRONG_VALUES.items() for v in vs])
def test_each_documented_violation_is_refused_by_the_schema_and_the_parser(field, value):
    detail = {"source": "s3://my-input/a.png", field: value}
    assert schema_check.check(detail, SCHEMA) != []
    outcome = _outcome(lambda: parse_message({**AWS_REQUESTED, "detail": detail}))
    assert isinstance(outcome, UnreadableMessage) or outcome[0].error is not None


@pytest.mark.parametrize("field, value", [(f, v) for f, vs in RIGHT_VALUES.items() for v in vs])
def test_each_documented_form_is_accepted_by_the_schema_and_the_parser(field, value):
    detail = {"source": "s3://my-input/a.png", field: value}
    assert schema_check.check(detail, SCHEMA) == []
    [trigger] = parse_message({**AWS_REQUESTED, "detail": detail})
    assert trigger.error is None


@st.composite
def details(draw) -> dict:
    detail = dict(draw(VALID_DETAIL))
    wrong = st.sampled_from(sorted(WRONG) + ["-source"])
    for field in draw(st.sampled_from([[], [wrong], [wrong], [wrong], [wrong, wrong]])):
        field = draw(field)  # noqa: PLW2901
        if field == "-source":
            detail.pop("source", None)
        else:
            detail[field] = draw(WRONG[field])
    return detail


@wide
@given(st.one_of(details(), details(), st.fixed_dictionaries({}, optional={"source": maybe_source, **maybe_fields})))
def test_the_schema_accepts_exactly_the_details_the_parser_accepts(detail):
    message = {**AWS_REQUESTED, "detail": detail}
    outcome = assert_total(message)
    accepted = not isinstance(outcome, UnreadableMessage) and outcome[0].error is None
    problems = schema_check.check(detail, SCHEMA)
    assert accepted == (problems == []), (problems, outcome)
