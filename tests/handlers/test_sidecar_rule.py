"""The sidecar rule: image and sidecar arrive in either order and produce exactly one generation."""
from __future__ import annotations

import json
import time

from aws_world import SDXL, png_bytes, s3_body, sd35_ok, sdxl_ok

from img2img.core.triggers import SIDECAR_CHECK


class RecordingScheduler:
    def __init__(self):
        self.deferred: list[tuple[dict, int]] = []

    def defer(self, message, delay_seconds):
        self.deferred.append((message, delay_seconds))


def check_body(message: dict) -> str:
    return json.dumps(message)


def test_image_first_waits_then_the_sidecar_runs_it_and_the_late_check_replays(world):
    scheduler = world.pipeline.scheduler = RecordingScheduler()
    world.put("cats/chelsea.png", world.sample("chelsea.png"))

    world.run(s3_body("cats/chelsea.png"))
    assert world.output_keys() == []  # waiting, not failed
    [(message, delay)] = scheduler.deferred
    assert message["type"] == SIDECAR_CHECK and message["key"] == "cats/chelsea.png"
    assert 55 <= delay <= 60  # the rest of the 60 s grace period

    world.put("cats/chelsea.png.json", {"prompt": "a cat made of origami paper"})
    world.stub.add_response("invoke_model", sd35_ok(seed=3))
    world.run(s3_body("cats/chelsea.png.json"))
    first = world.record("cats/chelsea.png")
    assert first["status"] == "succeeded" and first["trigger"] == "sidecar"
    assert first["params"]["text_prompts"][0]["text"] == "a cat made of origami paper"

    world.run(check_body(message))  # the grace period ends: same versions, so no second generation
    world.stub.assert_no_pending_responses()
    assert world.record("cats/chelsea.png")["job_id"] == first["job_id"]


def test_sidecar_first_is_used_when_the_image_arrives(world):
    world.put("cats/coffee.png.json", {"text_prompts": [{"text": "coffee on the moon", "weight": 1}],
                                       "model_id": SDXL, "style_preset": "photographic"})
    world.run(s3_body("cats/coffee.png.json"))  # no image yet: nothing to do
    assert world.output_keys() == []

    world.put("cats/coffee.png", world.sample("coffee.png"))
    world.stub.add_response("invoke_model", sdxl_ok())
    world.run(s3_body("cats/coffee.png"))
    record = world.record("cats/coffee.png")
    assert record["status"] == "succeeded" and record["model_request"]["style_preset"] == "photographic"
    assert record["trigger"] == "upload"


def test_no_sidecar_within_the_grace_period_fails_with_missing_parameters(world):
    world.pipeline.scheduler = RecordingScheduler()
    world.put("cats/lonely.png", png_bytes((128, 128)))
    world.run(s3_body("cats/lonely.png"))
    [(message, _)] = world.pipeline.scheduler.deferred

    world.run(check_body(message))
    error = world.record("cats/lonely.png")["error"]
    assert error["code"] == "missing_parameters"
    assert "waited 60 s" in error["message"] and "cats/lonely.png.json" in error["message"]


def test_an_upload_older_than_the_grace_period_fails_at_once(world):
    world.pipeline.clock = lambda: time.time() + 3600
    world.put("cats/old.png", png_bytes((128, 128)))
    world.run(s3_body("cats/old.png"))
    assert world.record("cats/old.png")["error"]["code"] == "missing_parameters"


def test_the_deferred_check_really_lands_on_the_queue_delayed(world):
    world.put("cats/q.png", png_bytes((128, 128)))
    world.run(s3_body("cats/q.png"))
    attrs = world.sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"


def test_a_reuploaded_sidecar_renders_the_image_again(world):
    world.put("cats/re.png", png_bytes((256, 256)))
    world.put("cats/re.png.json", {"prompt": "first"})
    world.stub.add_response("invoke_model", sd35_ok(seed=1))
    world.run(s3_body("cats/re.png"))
    first = world.record("cats/re.png")

    world.put("cats/re.png.json", {"prompt": "second"})
    world.stub.add_response("invoke_model", sd35_ok(seed=2))
    world.run(s3_body("cats/re.png.json"))
    second = world.record("cats/re.png")
    world.stub.assert_no_pending_responses()
    assert second["model_request"]["prompt"] == "second" and second["seeds"] == [2]
    assert second["sidecar"]["version_id"] != first["sidecar"]["version_id"]
    assert second["job_id"] != first["job_id"]


def test_stem_sidecar_applies_to_its_image_and_the_exact_sidecar_wins(world):
    world.put("pets/cat.jpg", world.sample("rocket.jpg"))
    world.put("pets/cat.json", {"prompt": "from stem"})
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(s3_body("pets/cat.json"))
    assert world.record("pets/cat.jpg")["model_request"]["prompt"] == "from stem"

    world.put("pets/cat.jpg.json", {"prompt": "from exact"})
    world.stub.add_response("invoke_model", sd35_ok())
    world.run(s3_body("pets/cat.jpg.json"))
    assert world.record("pets/cat.jpg")["model_request"]["prompt"] == "from exact"
    world.run(s3_body("pets/cat.json"))  # the stem sidecar no longer decides: nothing new to do
    world.stub.assert_no_pending_responses()


def test_folder_defaults_cascade_and_the_nearest_wins(world):
    world.put("_defaults.json", {"output_format": "webp", "prompt": "root prompt"})
    world.put("styles/anime/_defaults.json", {"prompt": "anime style", "model_id": SDXL,
                                              "style_preset": "anime"})
    world.run(s3_body("styles/anime/_defaults.json"))  # defaults alone trigger nothing
    world.put("styles/anime/kids/cat.png", png_bytes((256, 256)))
    world.stub.add_response("invoke_model", sdxl_ok())
    world.run(s3_body("styles/anime/kids/cat.png"))
    record = world.record("styles/anime/kids/cat.png")
    assert record["status"] == "succeeded", record["error"]
    assert record["model_request"]["style_preset"] == "anime"
    assert record["model_request"]["text_prompts"] == [{"text": "anime style", "weight": 1.0}]
    assert record["outputs"][0]["key"].endswith(".webp")
    assert record["param_sources"]["output_format"].endswith("s3://img2img-test-input/_defaults.json")


def test_broken_sidecar_json_fails_with_its_position(world):
    world.put("cats/bad.png", png_bytes((128, 128)))
    world.put("cats/bad.png.json", '{"prompt": "a cat",, }')
    world.run(s3_body("cats/bad.png.json"))
    error = world.record("cats/bad.png")["error"]
    assert error["code"] == "invalid_parameters"
    assert "cats/bad.png.json" in error["message"] and "line 1 column" in error["message"]


def test_a_job_whose_sidecar_changes_while_it_runs_leaves_the_outcome_to_the_newer_job(world):
    import base64 as b64

    world.put("race/cat.png", png_bytes((256, 256)))
    world.put("race/cat.png.json", {"prompt": "first"})

    class Model:
        def __init__(self, seed, during_call=lambda: None):
            self.seed, self.during_call = seed, during_call

        def invoke(self, model_id, body):
            self.during_call()
            return {"seeds": [self.seed], "finish_reasons": [None],
                    "images": [b64.b64encode(png_bytes()).decode()]}

    # The user re-uploads the sidecar while the first job waits on Bedrock.
    world.pipeline.model = Model(1, lambda: world.put("race/cat.png.json", {"prompt": "second"}))
    world.run(s3_body("race/cat.png"))
    assert world.output_keys() == []  # the old job writes nothing: it would overwrite the newer result

    world.pipeline.model = Model(2)
    world.run(s3_body("race/cat.png.json"))
    record = world.record("race/cat.png")
    assert record["model_request"]["prompt"] == "second" and record["seeds"] == [2]
