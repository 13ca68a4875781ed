"""Faults at the companion steps (the mask's LIST, HEAD and GET): a transient one is retried and records
nothing until the job ends; a permanent one (or the last attempt) ends in exactly one failure record.

The same shape as test_fault_matrix.py, whose cells are an image and its sidecar; these are an inpaint
image and its mask found by convention.
"""
from __future__ import annotations

import base64

import pytest
from aws_world import INPUT, png_bytes, s3_body
from PIL import Image

from img2img.core import images
from img2img.core.errors import JobError, transient

KEY = "faults/room.png"
MASK = KEY + ".mask.png"
SIBLINGS = "faults/room."  # the one LIST beside the image that finds its sidecar and its mask
STEPS = ("list", "head", "get")
MAX_DELIVERIES = 3  # IMG2IMG_MAX_RECEIVE_COUNT in the handler tests' settings


class Plan:
    def __init__(self, step: str, kind: str, when: str):
        self.step, self.kind, self.when = step, kind, when
        self.delivery, self.fired_on, self.model_calls = 0, set(), 0

    def at(self, step: str) -> None:
        if step != self.step or (self.when == "first" and self.fired_on) or self.delivery in self.fired_on:
            return  # once per delivery: the mask's HEAD is read twice a run (resolve, the change check)
        self.fired_on.add(self.delivery)
        if self.kind == "transient":
            raise transient("storage_error", f"injected at the mask's {step}")
        raise JobError("access_denied", f"injected at the mask's {step}")


class FaultyStore:
    def __init__(self, inner, plan: Plan):
        self.inner, self.plan = inner, plan

    def head(self, bucket, key, version_id=None):
        if bucket == INPUT and key == MASK:
            self.plan.at("head")
        return self.inner.head(bucket, key, version_id)

    def get(self, bucket, key, version_id=None):
        if bucket == INPUT and key == MASK:
            self.plan.at("get")
        return self.inner.get(bucket, key, version_id)

    def list_keys(self, bucket, prefix, *args, **kwargs):
        if bucket == INPUT and prefix in (KEY + ".mask.", SIBLINGS):
            self.plan.at("list")
        return self.inner.list_keys(bucket, prefix, *args, **kwargs)

    def put(self, *args, **kwargs):
        return self.inner.put(*args, **kwargs)

    def delete(self, *args, **kwargs):
        return self.inner.delete(*args, **kwargs)


class CountingModel:
    def __init__(self, plan: Plan):
        self.plan = plan

    def invoke(self, model_id, body):
        assert "mask" in body
        self.plan.model_calls += 1
        return {"seeds": [7], "finish_reasons": [None], "images": [base64.b64encode(png_bytes()).decode()]}


def records(world) -> list[str]:
    return [k for k in world.output_keys() if k.endswith(".json") and "_staging/" not in k]


@pytest.mark.parametrize("when", ["first", "every"])
@pytest.mark.parametrize("kind", ["transient", "permanent"])
@pytest.mark.parametrize("step", STEPS)
def test_a_fault_at_a_companion_step_ends_in_one_record(world, step, kind, when):
    plan = Plan(step, kind, when)
    world.pipeline.store = FaultyStore(world.pipeline.store, plan)
    world.pipeline.model = CountingModel(plan)
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (0, 0, 64, 64))
    world.put(MASK, images.png_bytes(mask))
    world.put(KEY, png_bytes((128, 128)), {"operation": "inpaint", "prompt": "a green velvet sofa"})

    for delivery in range(1, MAX_DELIVERIES + 1):
        plan.delivery = delivery
        failed = bool(world.run(s3_body(KEY), receive_count=delivery)["batchItemFailures"])
        if not failed:
            break
        assert kind == "transient"
        if delivery < MAX_DELIVERIES:
            assert records(world) == [], "a transient fault is retried, not recorded"

    assert plan.fired_on, "the fault was injected"
    assert records(world) == [KEY + ".json"]
    record = world.record(KEY)
    assert plan.model_calls <= 1
    if kind == "transient" and when == "first":
        assert record["status"] == "succeeded", record.get("error")
        assert record["companions"]["mask"]["key"] == MASK and delivery == 2
    elif kind == "transient":
        assert record["status"] == "failed" and record["error"]["code"] == "retries_exhausted"
        assert failed and delivery == MAX_DELIVERIES  # the message goes on to the DLQ, its record written
    else:
        assert record["status"] == "failed" and record["error"]["code"] == "access_denied"
        assert delivery == 1 and not failed  # permanent: never retried
