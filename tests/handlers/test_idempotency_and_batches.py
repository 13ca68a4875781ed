"""Duplicate deliveries generate once; one bad record never fails the batch; batches run concurrently."""
from __future__ import annotations

import base64
import io
import threading

from aws_world import png_bytes, s3_body, sd35_ok
from PIL import Image


def test_duplicate_deliveries_generate_once(world):
    world.put("d/cat.png", png_bytes((256, 256)), {"prompt": "a cat"})
    world.stub.add_response("invoke_model", sd35_ok(seed=5))
    first = world.run(s3_body("d/cat.png"))
    again = world.run(s3_body("d/cat.png"))  # S3 delivered twice; Stubber fails on a second call
    assert first == again == {"batchItemFailures": []}
    world.stub.assert_no_pending_responses()
    assert world.output_keys() == ["d/cat.png.json", "d/cat.png.png"]


def test_a_batch_mixing_good_invalid_and_throttled_records_returns_only_the_throttled(world):
    world.put("b/good.png", png_bytes((256, 256)), {"prompt": "good"})
    world.put("b/invalid.png", png_bytes((256, 256)), {"prompt": "bad", "seed": "-1"})
    world.put("b/throttled.png", png_bytes((256, 256)), {"prompt": "later"})
    world.stub.add_response("invoke_model", sd35_ok())
    world.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)

    response = world.run(s3_body("b/good.png"), s3_body("b/invalid.png"), s3_body("b/throttled.png"))

    assert response == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert world.record("b/good.png")["status"] == "succeeded"
    assert world.record("b/invalid.png")["error"]["code"] == "invalid_parameters"
    assert "b/throttled.png.json" not in world.output_keys()


class RendezvousModel:
    """Answers only once `parties` calls are in flight together: proves the records really overlap
    (run one at a time, the rendezvous would time out), without measuring time."""

    def __init__(self, parties: int):
        self.rendezvous = threading.Barrier(parties, timeout=30)

    def invoke(self, model_id, body):
        self.rendezvous.wait()
        if "fail" in body["prompt"]:
            from img2img.core.errors import transient
            raise transient("throttled", "slow down")
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buffer, "PNG")
        return {"seeds": [1], "finish_reasons": [None], "images": [base64.b64encode(buffer.getvalue()).decode()]}


def test_records_of_a_batch_run_concurrently_with_partial_failures_intact(world, monkeypatch):
    from img2img import settings

    monkeypatch.setenv("IMG2IMG_BATCH_CONCURRENCY", "4")
    settings.get_settings.cache_clear()
    world.pipeline.model = RendezvousModel(4)
    for i in range(4):
        world.put(f"c/{i}.png", png_bytes((128, 128)), {"prompt": "fail" if i == 2 else f"ok {i}"})

    response = world.run(*[s3_body(f"c/{i}.png") for i in range(4)])

    assert response == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert [world.record(f"c/{i}.png")["status"] for i in (0, 1, 3)] == ["succeeded"] * 3
