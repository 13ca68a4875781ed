"""What one job costs in S3 requests (issue 14: per-job overhead), and the folder-defaults cache that
pays for most of the saving: a change is seen within FOLDER_DEFAULTS_CACHE_SECONDS (at once in the
sandbox that receives its event), and a job never mixes defaults read at different times."""
from __future__ import annotations

import time
from collections import Counter

from aws_world import png_bytes, s3_body, sd35_ok

from img2img.limits import FOLDER_DEFAULTS_CACHE_SECONDS

PROMPT = {"prompt": "a watercolor painting"}


def s3_requests(world) -> list[tuple[str, str]]:
    """(operation, key or prefix) of every S3 request the worker sends from now on."""
    calls: list[tuple[str, str]] = []
    world.pipeline.store.s3.meta.events.register(
        "before-call.s3", lambda model, params, **kw: calls.append((model.name, params.get("url_path", ""))))
    return calls


def defaults_reads(calls) -> int:
    return sum(1 for op, path in calls if op == "GetObject" and path.endswith("_defaults.json"))


def run_job(world, key: str, seed: int = 42) -> dict:
    world.put(key, png_bytes((128, 128)), PROMPT)
    world.stub.add_response("invoke_model", sd35_ok(seed=seed))
    world.run(s3_body(key))
    return world.record(key)


def later(world, seconds: float) -> None:
    world.pipeline.clock = lambda: time.time() + seconds


def test_a_plain_job_costs_ten_s3_requests_and_no_folder_defaults_read_once_they_are_cached(world):
    calls = s3_requests(world)
    run_job(world, "a/b/first.png")
    assert defaults_reads(calls) == 3  # _defaults.json at the root, a/, a/b/: absent, once per sandbox
    calls.clear()

    record = run_job(world, "a/b/second.png")
    assert record["status"] == "succeeded"
    assert defaults_reads(calls) == 0
    assert Counter(op for op, _ in calls) == {
        "HeadObject": 2,      # the image when resolving, and again before storing (superseded?)
        "ListObjectsV2": 2,   # beside the image (sidecars, companions): when resolving and before storing
        "GetObject": 2,       # the image, the checkpoint (an earlier delivery's paid answer?)
        "PutObject": 3,       # the checkpoint, the output, the record
        "DeleteObject": 1,    # the checkpoint
    }


def test_a_job_with_a_sidecar_reads_it_once_and_heads_it_before_storing(world):
    world.put("s/cat.png.json", {"prompt": "a cat made of paper"})
    run_job(world, "s/warm.png")
    calls = s3_requests(world)
    world.put("s/cat.png", png_bytes((128, 128)))
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(s3_body("s/cat.png"))
    assert world.record("s/cat.png")["param_sources"]["prompt"] == "sidecar s3://img2img-test-input/s/cat.png.json"
    ops = Counter(op for op, _ in calls)
    assert ops["GetObject"] == 3 and ops["HeadObject"] == 3 and ops["ListObjectsV2"] == 2
    assert sum(ops.values()) == 12
    assert ("GetObject", "/s/cat.json") not in calls  # the listing showed the stem's sidecar absent


def test_a_folder_defaults_change_is_seen_after_the_cache_time_and_at_once_where_its_event_lands(world):
    world.put("f/_defaults.json", {"seed": 11})
    assert run_job(world, "f/one.png")["params"]["seed"] == 11

    world.put("f/_defaults.json", {"seed": 22})  # its event went to another sandbox
    later(world, FOLDER_DEFAULTS_CACHE_SECONDS - 1)
    assert run_job(world, "f/two.png")["params"]["seed"] == 11  # within the documented delay
    later(world, FOLDER_DEFAULTS_CACHE_SECONDS + 1)
    assert run_job(world, "f/three.png")["params"]["seed"] == 22

    world.put("f/_defaults.json", {"seed": 33})
    world.run(s3_body("f/_defaults.json"))  # this sandbox gets the change's own event
    assert run_job(world, "f/four.png")["params"]["seed"] == 33


def test_a_folder_defaults_file_created_later_is_seen_after_the_cache_time(world):
    assert run_job(world, "g/one.png")["outputs"][0]["key"].endswith(".png")
    world.put("_defaults.json", {"output_format": "webp"})
    later(world, FOLDER_DEFAULTS_CACHE_SECONDS + 1)
    record = run_job(world, "g/two.png")
    assert record["outputs"][0]["key"].endswith(".webp")
    assert record["param_sources"]["output_format"] == "folder defaults s3://img2img-test-input/_defaults.json"


def test_a_job_never_mixes_folder_levels_read_at_different_times(world):
    world.put("_defaults.json", {"seed": 1, "output_format": "png"})
    world.put("m/_defaults.json", {"seed": 2})
    first = run_job(world, "m/one.png")
    assert (first["params"]["seed"], first["outputs"][0]["key"][-4:]) == (2, ".png")

    # Both levels change together; a job within the cache time sees both as they were, never half.
    world.put("_defaults.json", {"seed": 1, "output_format": "webp"})
    world.put("m/_defaults.json", {"seed": 3})
    later(world, FOLDER_DEFAULTS_CACHE_SECONDS / 2)
    second = run_job(world, "m/two.png")
    assert (second["params"]["seed"], second["outputs"][0]["key"][-4:]) == (2, ".png")
    later(world, FOLDER_DEFAULTS_CACHE_SECONDS + 1)
    third = run_job(world, "m/three.png")
    assert (third["params"]["seed"], third["outputs"][0]["key"][-5:]) == (3, ".webp")


def test_a_failed_read_of_the_defaults_caches_nothing(world):
    from img2img.core.errors import transient

    store = world.pipeline.store
    real_get, failed = store.get, []

    def flaky_get(bucket, key, version_id=None):
        if key == "h/_defaults.json" and not failed:
            failed.append(key)
            raise transient("storage_error", "injected")
        return real_get(bucket, key, version_id)

    store.get = flaky_get
    world.put("h/_defaults.json", {"seed": 5})
    world.put("h/one.png", png_bytes((128, 128)), PROMPT)
    assert world.run(s3_body("h/one.png"))["batchItemFailures"]  # retried later, nothing cached
    world.stub.add_response("invoke_model", sd35_ok(seed=5))
    world.run(s3_body("h/one.png"), receive_count=2)
    assert world.record("h/one.png")["params"]["seed"] == 5
