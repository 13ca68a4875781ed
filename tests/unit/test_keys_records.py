"""Output key scheme, sidecar and folder-defaults lookup, metadata encoding, record shapes."""
from __future__ import annotations

import itertools
import json
from urllib.parse import unquote

import pytest

from img2img.core import keys, records

FORMATS = ("png", "jpeg", "webp")


# ---- output keys --------------------------------------------------------------------------------

def test_output_keys_append_the_format_and_json():
    assert records.output_keys("", "folder/cat.jpg", "png") == ("folder/cat.jpg.png", "folder/cat.jpg.json")
    assert records.output_keys("out/", "folder/cat.jpg", "webp") == ("out/folder/cat.jpg.webp",
                                                                      "out/folder/cat.jpg.json")


def test_cat_jpg_and_cat_png_in_one_folder_never_collide():
    for fmt in FORMATS:
        jpg = records.output_keys("out/", "a/cat.jpg", fmt)
        png = records.output_keys("out/", "a/cat.png", fmt)
        assert not set(jpg) & set(png)


SOURCE_KEYS = ["cat.jpg", "cat.png", "cat", "cat.jpg.png", "cat.png.jpg", "a/cat.jpg", "a/cat.json.png",
               "cat.jpeg", "cat.webp", "cat.png.png", "x.json", "dir.png/cat.png", "ü ñ/猫 +1.png"]


@pytest.mark.parametrize("prefix", ["", "out/", "generated-"])
def test_no_image_key_ever_equals_a_record_key_or_another_inputs_image_key(prefix):
    images_seen, records_seen = {}, {}
    for source, fmt in itertools.product(SOURCE_KEYS, FORMATS):
        image_key, record_key = records.output_keys(prefix, source, fmt)
        assert image_key != record_key
        assert image_key.startswith(prefix) and record_key.startswith(prefix)
        assert images_seen.setdefault(image_key, source) == source
        records_seen.setdefault(record_key, source)
        assert record_key == records.record_key(prefix, source)
    assert not set(images_seen) & set(records_seen)
    assert len(records_seen) == len(SOURCE_KEYS)


def test_record_key_does_not_depend_on_the_output_format():
    assert {records.output_keys("p/", "a/b.png", f)[1] for f in FORMATS} == {"p/a/b.png.json"}


# ---- sidecars and folder defaults -----------------------------------------------------------------

@pytest.mark.parametrize("image_key, expected", [
    ("cat.jpg", ["cat.jpg.json", "cat.json"]),
    ("a/b/cat.jpg", ["a/b/cat.jpg.json", "a/b/cat.json"]),
    ("a/cat.tar.png", ["a/cat.tar.png.json", "a/cat.tar.json"]),
    ("a/my photo+1 ü.png", ["a/my photo+1 ü.png.json", "a/my photo+1 ü.json"]),
    ("cat", ["cat.json"]),
    ("a/.png", ["a/.png.json"]),
])
def test_sidecar_candidates_exact_first_then_stem(image_key, expected):
    assert keys.sidecar_candidates(image_key) == expected


@pytest.mark.parametrize("sidecar, image", [("cat.jpg.json", "cat.jpg"), ("a/cat.PNG.json", "a/cat.PNG"),
                                            ("cat.json", None), ("a/_defaults.json", None)])
def test_exact_sidecar_names_one_image(sidecar, image):
    assert keys.image_for_exact_sidecar(sidecar) == image


def test_defaults_chain_goes_from_the_root_to_the_nearest_folder():
    assert keys.defaults_chain("a/b/cat.jpg") == ["_defaults.json", "a/_defaults.json", "a/b/_defaults.json"]
    assert keys.defaults_chain("cat.jpg") == ["_defaults.json"]


@pytest.mark.parametrize("key, image, json_, defaults", [
    ("cat.JPG", True, False, False), ("cat.heic", True, False, False), ("cat.tiff", True, False, False),
    ("cat.jpg.json", False, True, False), ("a/_defaults.json", False, True, True),
    ("a/x_defaults.json", False, True, False), ("cat.txt", False, False, False), ("cat.svg", False, False, False),
])
def test_key_kinds(key, image, json_, defaults):
    assert (keys.is_image(key), keys.is_json(key), keys.is_folder_defaults(key)) == (image, json_, defaults)


# ---- metadata values ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    "folder/cat.jpg", "my photo+1 ü.png", "100%.png", "%41%2B%25.png", "a+b+c", "一艘宇宙飞船/猫.png",
    "emoji 🚀.jpg", "tab\there", "line\nbreak", "quote\"s and 'apostrophes'", "=?UTF-8?B?abc?=", "",
])
def test_metadata_value_is_ascii_and_round_trips_with_unquote(value):
    encoded = records.metadata_value(value)
    encoded.encode("ascii")
    assert all(0x20 <= ord(c) < 0x7F for c in encoded)
    assert unquote(encoded) == value


def test_metadata_value_keeps_plain_ascii_readable():
    assert records.metadata_value("photos/cat 1+2.jpg") == "photos/cat 1+2.jpg"
    assert records.metadata_value("50%") == "50%25"


# ---- records --------------------------------------------------------------------------------------

def test_base_record_fields_and_order():
    record = records.base_record("succeeded", "j-1", {"bucket": "in", "key": "cat.jpg"}, model_id="m",
                                 params={"seed": 1}, sources={"seed": "sidecar s3://in/cat.jpg.json"})
    assert list(record) == ["schema", "status", "job_id", "source", "sidecar", "trigger", "model_id", "params",
                            "param_sources", "attempt", "finished_at"]
    assert record["schema"] == "bedrock-img2img/record/v1"
    assert record["finished_at"].endswith("Z") and "T" in record["finished_at"]
    json.dumps(record)


def test_success_and_failure_records():
    common = records.base_record("failed", "j-2", {"bucket": "in", "key": "cat.jpg"})
    failed = records.failure_record(common, {"code": "invalid_image", "message": "x"})
    assert failed["outputs"] == [] and failed["error"]["code"] == "invalid_image"
    ok = records.success_record(records.base_record("succeeded", "j-3", {}), request={"prompt": "a"}, seeds=[1],
                                outputs=[{"key": "k"}], input_info={}, prepared={}, dropped=[], timings_ms={})
    assert ok["error"] is None and ok["seeds"] == [1] and ok["status"] == "succeeded"
    assert "status" in common and common["status"] == "failed"  # the common dict is not mutated
