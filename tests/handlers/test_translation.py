"""Prompts in any language: a Chinese prompt from metadata, a sidecar, an event or a direct invoke is
translated once by the Converse call pinned here, recorded with the original, and drives the image
request; English prompts and `prompt_language: as-is` cost no call; translation off changes nothing."""
from __future__ import annotations

import json
from email.header import Header

import pytest
from aws_world import SD35, Context, png_bytes, s3_body, sd35_ok

from img2img.aws.translator import BedrockTranslator
from img2img.core.quota import Admission
from img2img.core.translation import INSTRUCTION, MAX_OUTPUT_TOKENS

TEXT_MODEL = "us.amazon.nova-2-lite-v1:0"
SPACESHIP = "一艘宇宙飞船"


def converse_params(text: str, language: str = "zh") -> dict:
    return {"modelId": TEXT_MODEL, "system": [{"text": INSTRUCTION}],
            "messages": [{"role": "user", "content": [{"text": f"[{language}] {text}"}]}],
            "inferenceConfig": {"maxTokens": MAX_OUTPUT_TOKENS, "temperature": 0}}


def converse_answer(text: str, reason: str = "end_turn") -> dict:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": reason,
            "usage": {"inputTokens": 90, "outputTokens": 6, "totalTokens": 96}, "metrics": {"latencyMs": 300}}


def image_call(world, prompt: str) -> None:
    """The SD3.5 call these tests expect, its body pinned except the image."""
    calls = world.image_calls = []
    world.pipeline.model._runtime.meta.events.register(
        "before-parameter-build.bedrock-runtime.InvokeModel",
        lambda params, **kw: calls.append(json.loads(params["body"])))
    world.stub.add_response("invoke_model", sd35_ok(seed=9))
    world.expected_prompt = prompt


@pytest.fixture
def translating(world):
    world.pipeline.translator = BedrockTranslator(TEXT_MODEL, runtime=world.pipeline.model._runtime)
    return world


def test_a_chinese_prompt_from_metadata_is_translated_once_and_drives_the_image(translating):
    world = translating
    world.put("ships/a.png", png_bytes(), {"prompt": Header(SPACESHIP, "utf-8").encode(), "seed": "9"})
    world.stub.add_response("converse", converse_answer("a spaceship"), converse_params(SPACESHIP))
    image_call(world, "a spaceship")
    world.run(s3_body("ships/a.png"))
    world.stub.assert_no_pending_responses()
    assert world.image_calls[0]["prompt"] == "a spaceship"
    record = world.record("ships/a.png")
    assert record["status"] == "succeeded"
    assert record["model_request"]["prompt"] == "a spaceship"
    assert record["params"]["text_prompts"][0]["text"] == SPACESHIP  # the job as it was asked
    t = record["translation"]
    assert t["translated"] and t["model_id"] == TEXT_MODEL and t["detected"] == ["zh"]
    assert t["original"] == {"prompt": SPACESHIP} and t["english"] == {"prompt": "a spaceship"}
    assert not [k for k in world.output_keys() if "_staging" in k]  # the translation checkpoint is gone too


def test_a_sidecar_with_several_prompt_texts_translates_each_and_keeps_english(translating):
    world = translating
    world.put("ships/b.png", png_bytes())
    world.put("ships/b.png.json", {"prompt": SPACESHIP, "negative_prompt": "模糊", "seed": 9})
    world.stub.add_response("converse", converse_answer("a spaceship"), converse_params(SPACESHIP))
    world.stub.add_response("converse", converse_answer("blurry"), converse_params("模糊"))
    image_call(world, "a spaceship")
    world.run(s3_body("ships/b.png.json"))
    world.stub.assert_no_pending_responses()
    body = world.image_calls[0]
    assert (body["prompt"], body["negative_prompt"]) == ("a spaceship", "blurry")


def test_an_event_and_a_direct_invoke_translate_too(translating):
    from img2img.handlers import direct

    world = translating
    world.put("ships/c.png", png_bytes())
    world.stub.add_response("converse", converse_answer("a red spaceship"), converse_params("一艘红色的宇宙飞船"))
    image_call(world, "a red spaceship")
    event = {"version": "0", "id": "e1", "detail-type": "ImageGenerationRequested", "source": "my.app",
             "account": "123456789012", "time": "2026-12-01T00:00:00Z", "region": "us-east-1", "resources": [],
             "detail": {"source": "s3://img2img-test-input/ships/c.png", "params": {"prompt": "一艘红色的宇宙飞船"}}}
    world.run(json.dumps(event))
    assert world.image_calls[-1]["prompt"] == "a red spaceship"
    world.stub.add_response("converse", converse_answer("a blue spaceship"), converse_params("一艘蓝色的宇宙飞船"))
    world.stub.add_response("invoke_model", sd35_ok(seed=9))
    record = direct.handler({"source": "s3://img2img-test-input/ships/c.png",
                             "params": {"prompt": "一艘蓝色的宇宙飞船"}, "job_id": "direct-1"}, Context())
    world.stub.assert_no_pending_responses()
    assert record["status"] == "succeeded" and record["model_request"]["prompt"] == "a blue spaceship"


def test_english_and_as_is_cost_no_call(translating):
    world = translating
    world.put("ships/d.png", png_bytes(), {"prompt": "a spaceship, (chrome:1.2)", "seed": "9"})
    image_call(world, "a spaceship, (chrome:1.2)")
    world.run(s3_body("ships/d.png"))
    world.put("ships/e.png", png_bytes(), {"prompt": Header(SPACESHIP, "utf-8").encode(), "prompt-language": "as-is"})
    world.stub.add_response("invoke_model", sd35_ok(seed=9))
    world.run(s3_body("ships/e.png"))
    world.stub.assert_no_pending_responses()  # no converse response was queued: none was asked for
    assert [c["prompt"] for c in world.image_calls] == ["a spaceship, (chrome:1.2)", SPACESHIP]
    assert "translation" not in world.record("ships/d.png")
    assert world.record("ships/e.png")["params"]["prompt_language"] == "as-is"


def test_translation_off_leaves_the_request_as_it_was_and_says_so(world):
    world.put("ships/f.png", png_bytes(), {"prompt": Header(SPACESHIP, "utf-8").encode(), "seed": "9"})
    image_call(world, SPACESHIP)
    world.run(s3_body("ships/f.png"))
    assert world.image_calls[0] == {"prompt": SPACESHIP, "mode": "image-to-image",
                                    "image": world.image_calls[0]["image"], "strength": 0.65, "seed": 9,
                                    "output_format": "png"}
    t = world.record("ships/f.png")["translation"]
    assert t["translated"] is False and "off" in t["reason"] and t["detected"] == ["zh"]


def test_a_refused_translation_is_content_filtered_naming_the_stage(translating):
    world = translating
    world.put("ships/g.png", png_bytes(), {"prompt": Header(SPACESHIP, "utf-8").encode()})
    world.stub.add_response("converse", converse_answer("", "content_filtered"), converse_params(SPACESHIP))
    world.run(s3_body("ships/g.png"))
    error = world.record("ships/g.png")["error"]
    assert error["code"] == "content_filtered" and error["stage"] == "translation"


def test_a_throttled_translation_is_retried_and_a_redelivery_never_pays_twice(translating):
    world = translating
    world.put("ships/h.png", png_bytes(), {"prompt": Header(SPACESHIP, "utf-8").encode(), "seed": "9"})
    world.stub.add_client_error("converse", "ThrottlingException", http_status_code=429)
    result = world.run(s3_body("ships/h.png"))
    assert result["batchItemFailures"]  # transient: back to the queue, no record yet
    world.stub.add_response("converse", converse_answer("a spaceship"), converse_params(SPACESHIP))
    world.stub.add_client_error("invoke_model", "ThrottlingException", http_status_code=429)
    assert world.run(s3_body("ships/h.png"), receive_count=2)["batchItemFailures"]  # the image call throttled
    image_call(world, "a spaceship")  # third delivery: the translation comes from its checkpoint
    world.run(s3_body("ships/h.png"), receive_count=3)
    world.stub.assert_no_pending_responses()
    record = world.record("ships/h.png")
    assert record["status"] == "succeeded" and record["translation"]["resumed"] is True
    assert world.image_calls[-1]["prompt"] == "a spaceship"


def test_a_bad_prompt_language_names_field_source_and_what_is_allowed(world):
    world.put("ships/i.png", png_bytes(), {"prompt": "a ship", "prompt-language": "Chinese!"})
    world.run(s3_body("ships/i.png"))
    (problem,) = world.record("ships/i.png")["error"]["errors"]
    assert problem["field"] == "prompt_language" and problem["source"] == "metadata x-amz-meta-prompt-language"
    assert problem["value"] == "Chinese!" and "as-is" in problem["allowed"]


@pytest.mark.parametrize("operation, field", [("search-replace", "search_prompt"), ("search-recolor", "select_prompt")])
def test_the_services_search_and_select_prompts_are_translated(translating, operation, field):
    world = translating
    world.put("ships/j.png", png_bytes((128, 96)), {"operation": operation, "prompt": "a red boat",
                                                    field.replace("_", "-"): Header("猫", "utf-8").encode()})
    world.stub.add_response("converse", converse_answer("the cat"), converse_params("猫"))
    world.stub.add_response("invoke_model", sd35_ok(seed=9))
    world.run(s3_body("ships/j.png"))
    world.stub.assert_no_pending_responses()
    record = world.record("ships/j.png")
    assert record["status"] == "succeeded" and record["model_request"][field] == "the cat"
    assert SD35 not in record["model_id"]


def test_a_chinese_prompt_through_the_sync_api(api):
    from api_world import b64, post

    api.pipeline.translator = BedrockTranslator(TEXT_MODEL, runtime=api.pipeline.model._runtime)
    api.stub.add_response("converse", converse_answer("a spaceship"), converse_params(SPACESHIP))
    api.stub.add_response("invoke_model", sd35_ok(seed=5, image=png_bytes((256, 256))))
    answer = post("/v1/generations", {"image": b64(png_bytes((256, 256))), "params": {"prompt": SPACESHIP}})
    assert answer.status == 200, answer.raw
    record = answer.json["record"]
    assert record["model_request"]["prompt"] == "a spaceship" and record["translation"]["translated"]
    api.stub.assert_no_pending_responses()


class Quota:
    """A QuotaLimiter (core.ports) that admits the first `slots[model]` calls of each model and refuses the
    rest with `wait` seconds; it remembers every ticket asked for and every throttle reported."""

    def __init__(self, slots: dict[str, int], wait: int = 7):
        self.slots, self.wait, self.asked, self.throttles = dict(slots), wait, [], []

    def acquire(self, model_id: str, *, reservation=None) -> Admission:
        self.asked.append(model_id)
        if self.slots.get(model_id, 1) <= 0:
            return Admission(self.wait)
        self.slots[model_id] = self.slots.get(model_id, 1) - 1
        return Admission(0)

    def throttled(self, model_id: str) -> None:
        self.throttles.append(model_id)


def test_a_translation_refused_by_its_models_quota_waits_its_turn_and_calls_no_model(translating, monkeypatch):
    world = translating
    world.pipeline.quota = quota = Quota({TEXT_MODEL: 0}, wait=7)
    deferred = []
    monkeypatch.setattr(world.pipeline.scheduler, "defer", lambda message, delay: deferred.append(delay))
    world.put("ships/q.png", png_bytes(), {"prompt": Header(SPACESHIP, "utf-8").encode(), "seed": "9"})

    assert world.run(s3_body("ships/q.png")) == {"batchItemFailures": []}  # a delayed copy replaces it

    assert deferred == [7]  # back when the translation model's turn comes, like a refused image call
    assert quota.asked == [TEXT_MODEL]  # its own key; the image model's budget was not touched
    world.stub.assert_no_pending_responses()  # no Converse call, no image call (none was stubbed)
    assert "ships/q.png.json" not in world.output_keys()
    quota.slots[TEXT_MODEL] = 1  # its turn: the job comes back and runs whole
    world.stub.add_response("converse", converse_answer("a spaceship"), converse_params(SPACESHIP))
    image_call(world, "a spaceship")
    world.run(s3_body("ships/q.png"))
    world.stub.assert_no_pending_responses()
    assert world.record("ships/q.png")["status"] == "succeeded"
    assert quota.asked == [TEXT_MODEL, TEXT_MODEL, SD35]


def test_a_refusal_after_one_text_is_translated_never_pays_for_that_text_again(translating):
    world = translating
    world.pipeline.quota = quota = Quota({TEXT_MODEL: 1})
    world.put("ships/r.png", png_bytes())
    world.put("ships/r.png.json", {"prompt": SPACESHIP, "negative_prompt": "模糊", "seed": 9})
    world.stub.add_response("converse", converse_answer("a spaceship"), converse_params(SPACESHIP))

    world.run(s3_body("ships/r.png.json"))  # the prompt is translated, the negative prompt has no slot
    world.stub.assert_no_pending_responses()
    quota.slots[TEXT_MODEL] = 1
    world.stub.add_response("converse", converse_answer("blurry"), converse_params("模糊"))  # only this one
    image_call(world, "a spaceship")
    world.run(s3_body("ships/r.png.json"))

    world.stub.assert_no_pending_responses()
    body = world.image_calls[0]
    assert (body["prompt"], body["negative_prompt"]) == ("a spaceship", "blurry")
    assert world.record("ships/r.png")["translation"]["resumed"] is True


def test_a_throttled_translation_lowers_the_translation_models_shared_rate(translating):
    world = translating
    world.pipeline.quota = quota = Quota({})
    world.put("ships/s.png", png_bytes(), {"prompt": Header(SPACESHIP, "utf-8").encode()})
    world.stub.add_client_error("converse", "ThrottlingException", http_status_code=429)
    assert world.run(s3_body("ships/s.png"))["batchItemFailures"]  # a throttle keeps its back-off
    assert quota.throttles == [TEXT_MODEL]
