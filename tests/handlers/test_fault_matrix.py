"""A fault at every step of a job, of every kind, once or on every delivery: each cell ends with exactly
one record (or, when the record itself can never be written, in the DLQ), the right code, and no more
model calls than 1 + the transient faults of the model call itself (a job never pays Bedrock twice)."""
from __future__ import annotations

import base64
import json

import pytest
from aws_world import INPUT, OUTPUT, png_bytes, s3_body

from img2img.core.errors import JobError, transient

KEY = "matrix/a.png"
STEPS = ("head", "sidecar", "download", "model", "checkpoint_put", "output_put", "record_put",
         "checkpoint_delete", "event")
KINDS = ("transient", "permanent", "defect")
WHEN = ("first", "every")
MAX_DELIVERIES = 3  # IMG2IMG_MAX_RECEIVE_COUNT in the handler tests' settings


def fault(kind: str, step: str) -> Exception:
    if kind == "transient":
        return transient("throttled" if step == "model" else "storage_error", f"injected at {step}")
    if kind == "permanent":
        return JobError("access_denied", f"injected at {step}")
    return RuntimeError(f"injected defect at {step}")


class Plan:
    """Raises the fault when `step` is reached: on the first delivery only, or on every one."""

    def __init__(self, step: str, kind: str, when: str):
        self.step, self.kind, self.when = step, kind, when
        self.delivery = 0
        self.fired_on: set[int] = set()
        self.model_calls = 0
        self.transient_model_faults = 0

    def at(self, step: str) -> None:
        if step != self.step or (self.when == "first" and self.fired_on):
            return
        if self.delivery in self.fired_on and step in ("head",):
            return  # the source HEAD happens twice per run (resolve, then the change check): fault once
        self.fired_on.add(self.delivery)
        if step == "model" and self.kind == "transient":
            self.transient_model_faults += 1
        raise fault(self.kind, step)


class FaultyStore:
    def __init__(self, inner, plan: Plan):
        self.inner, self.plan = inner, plan

    def head(self, bucket, key, version_id=None):
        if bucket == INPUT and key == KEY:
            self.plan.at("head")
        return self.inner.head(bucket, key, version_id)

    def get(self, bucket, key, version_id=None):
        if bucket == INPUT and key == KEY:
            self.plan.at("download")
        elif bucket == INPUT and key == KEY + ".json":
            self.plan.at("sidecar")
        return self.inner.get(bucket, key, version_id)

    def list_keys(self, *args, **kwargs):
        return self.inner.list_keys(*args, **kwargs)

    def put(self, bucket, key, data, content_type, metadata=None):
        if bucket == OUTPUT:
            self.plan.at("checkpoint_put" if "_staging/" in key else "record_put" if key.endswith(".json")
                         else "output_put")
        return self.inner.put(bucket, key, data, content_type, metadata)

    def delete(self, bucket, key):
        self.plan.at("checkpoint_delete")
        return self.inner.delete(bucket, key)


class FaultyModel:
    def __init__(self, plan: Plan):
        self.plan = plan

    def invoke(self, model_id, body):
        self.plan.model_calls += 1
        self.plan.at("model")
        return {"seeds": [7], "finish_reasons": [None], "images": [base64.b64encode(png_bytes((1024, 1024))).decode()]}


class FaultyEvents:
    def __init__(self, plan: Plan):
        self.plan, self.published = plan, []

    def publish(self, detail_type, detail):
        self.plan.at("event")
        self.published.append(detail_type)


def expected(step: str, kind: str, when: str) -> str:
    """The outcome a user should see: a record's status or error code, or "dlq" when no record can be
    written (the alarmed DLQ is the only other place a job may end)."""
    if step in ("checkpoint_delete", "event"):
        return "succeeded"  # cleanup (a lifecycle rule expires leftovers) and a notification about the record
    if step == "checkpoint_put" and kind != "defect":
        return "succeeded"  # the job goes on without its checkpoint; only a later fault would pay again
    if step == "record_put":
        return "dlq" if when == "every" else "succeeded"  # retried from the checkpoint: no second model call
    if kind == "transient":
        return "succeeded" if when == "first" else "retries_exhausted"
    return "access_denied" if kind == "permanent" else "internal_error"


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("step", STEPS)
def test_every_fault_ends_in_one_record_and_never_pays_twice(world, step, kind, when):
    plan = Plan(step, kind, when)
    pipeline = world.pipeline
    pipeline.store = FaultyStore(pipeline.store, plan)
    pipeline.model = FaultyModel(plan)
    pipeline.events = FaultyEvents(plan)
    world.put(KEY + ".json", {"prompt": "a matrix"})
    world.put(KEY, png_bytes((512, 512)))

    failed = True
    for delivery in range(1, MAX_DELIVERIES + 1):
        plan.delivery = delivery
        failed = bool(world.run(s3_body(KEY), receive_count=delivery)["batchItemFailures"])
        if not failed:
            break

    outcome = expected(step, kind, when)
    outputs = world.output_keys()
    records = [k for k in outputs if k.endswith(".json")]
    outputs = [k for k in outputs if "_staging/" not in k or step != "checkpoint_delete"]
    if outcome != "dlq" and step != "checkpoint_delete":
        assert not [k for k in outputs if "_staging/" in k], outputs  # checkpoints are cleaned up
    assert plan.model_calls <= 1 + plan.transient_model_faults, (plan.model_calls, plan.transient_model_faults)
    if outcome == "dlq":
        assert records == [] and failed  # the message's last delivery failed: the queue moves it to the DLQ
        return
    assert records == [KEY + ".json"], outputs
    record = world.record(KEY)
    if outcome == "succeeded":
        assert record["status"] == "succeeded", record["error"]
        assert [k for k in outputs if "_staging/" not in k] == [KEY + ".json", KEY + ".png"]
    else:
        assert record["status"] == "failed" and record["error"]["code"] == outcome, record["error"]
        assert KEY + ".png" not in outputs
        json.dumps(record, allow_nan=False)
    # permanent faults and defects are never retried: they end on the delivery that met them
    if kind != "transient" and outcome not in ("succeeded",):
        assert not failed and delivery == min(plan.fired_on)
