"""The per-model quota against moto's DynamoDB: who waits, who goes, and what happens when the table fails."""
from __future__ import annotations

import json
import math

import boto3
import pytest
from aws_world import SD35, SDXL, Context, model_calls, png_bytes, s3_body, sd35_ok, sdxl_ok

QUOTA_TABLE = "img2img-test-quota"
NOW = 1_000_000.0  # the start of a window: 61/min is 1 request per 1 s window (a minute touches 61)


@pytest.fixture
def quota_env(settings_env, monkeypatch):
    monkeypatch.setenv("IMG2IMG_QUOTA_TABLE", QUOTA_TABLE)
    monkeypatch.setenv("IMG2IMG_MODEL_QUOTAS", json.dumps({"default": 600, SD35: 61}))


@pytest.fixture
def limited(quota_env, world):
    boto3.client("dynamodb", region_name="us-east-1").create_table(
        TableName=QUOTA_TABLE, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    world.pipeline.quota.clock = lambda: NOW
    world.pipeline.quota.jitter = lambda: 0.0
    return world


@pytest.fixture
def deferrals(limited, monkeypatch):
    sent = []
    scheduler = limited.pipeline.scheduler
    original = scheduler.defer
    monkeypatch.setattr(scheduler, "defer", lambda message, delay: sent.append((message, delay)) or
                        original(message, delay))
    return sent


def upload(world, key, model=SD35):
    world.put(key, png_bytes((256, 256)), {"prompt": "a lighthouse", "model-id": model})
    return s3_body(key)


def test_a_job_over_its_models_budget_goes_back_to_the_queue_with_the_delay_and_no_model_call(limited, deferrals):
    first, second = upload(limited, "q/one.png"), upload(limited, "q/two.png")
    limited.stub.add_response("invoke_model", sd35_ok())
    calls = model_calls(limited)

    response = limited.run(first, second)

    assert len(calls) == 1  # the second job never reached Bedrock
    assert response == {"batchItemFailures": []}  # its message is done: a delayed copy replaces it
    held = {"model_id": SD35, "window": int(NOW) + 1, "ticket": 1}  # the next window's slot, reserved
    assert deferrals == [({**json.loads(second), "quota_reservation": held}, 1)]  # due 1 s on, holding it
    assert limited.record("q/one.png")["status"] == "succeeded"
    assert "q/two.png.json" not in limited.output_keys()


def test_the_returned_job_runs_when_its_window_comes(limited, deferrals):
    first, second = upload(limited, "q/one.png"), upload(limited, "q/two.png")
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(first, second)

    limited.pipeline.quota.clock = lambda: NOW + deferrals[0][1]
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(json.dumps(deferrals[0][0]))
    assert limited.record("q/two.png")["status"] == "succeeded"


def test_another_models_job_is_not_blocked_by_a_models_spent_budget(limited, deferrals):
    first, second, other = upload(limited, "q/one.png"), upload(limited, "q/two.png"), upload(limited, "q/x.png", SDXL)
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.stub.add_response("invoke_model", sdxl_ok())
    calls = model_calls(limited)

    limited.run(first, second, other)

    assert [c["modelId"] for c in calls] == [SD35, SDXL]
    assert limited.record("q/x.png")["status"] == "succeeded"
    assert [delay for _, delay in deferrals] == [1]


def test_on_the_last_delivery_a_quota_wait_is_recorded_as_retries_exhausted(limited, deferrals):
    first, second = upload(limited, "q/one.png"), upload(limited, "q/two.png")
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(first)

    response = limited.run(second, receive_count=3)  # maxReceiveCount is 3 in these tests

    assert response["batchItemFailures"] == [{"itemIdentifier": "m0"}] and deferrals == []
    error = limited.record("q/two.png")["error"]
    assert error["code"] == "retries_exhausted" and error["cause"] == "quota_wait"


def test_direct_invoke_over_budget_raises_the_transient_error_for_the_retry_policy(limited):
    from img2img.handlers import direct
    from img2img.handlers.direct import TransientJobError

    upload(limited, "sfn/a.png")
    upload(limited, "sfn/b.png")
    limited.stub.add_response("invoke_model", sd35_ok())
    direct.handler({"source": {"bucket": "img2img-test-input", "key": "sfn/a.png"}}, Context())
    calls = model_calls(limited)
    with pytest.raises(TransientJobError, match="quota_wait"):
        direct.handler({"source": {"bucket": "img2img-test-input", "key": "sfn/b.png"}}, Context())
    assert calls == []


def test_a_throttle_lowers_the_models_rate_for_every_sandbox(limited, deferrals):
    from img2img.aws.quota import DynamoDBQuota
    from img2img.core import quota as Q

    limited.pipeline.quota.budgets = Q.Budgets.from_config({SD35: 610})  # 10 a window
    limited.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    limited.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)

    response = limited.run(upload(limited, "q/busy.png"))

    assert response["batchItemFailures"] == [{"itemIdentifier": "m0"}]  # a throttle keeps its back-off
    other_sandbox = DynamoDBQuota(QUOTA_TABLE, Q.Budgets.from_config({SD35: 610}), clock=lambda: NOW)
    state = other_sandbox._rate(SD35, NOW)
    assert state is not None and state.rpm == 610 and state.hold == Q.NUDGE  # one throttle: a pause
    assert other_sandbox.acquire(SD35).wait > 0  # ... which every sandbox keeps
    limited.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    limited.stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    after = NOW + Q.NUDGE + 1
    limited.pipeline.quota.clock = lambda: after
    limited.run(upload(limited, "q/busy2.png"))  # a second right after: the quota fell
    state = other_sandbox._rate(SD35, after)
    assert state.rpm == pytest.approx(610 * Q.DECREASE)
    assert state.hold == pytest.approx(60 * (1 - Q.DRAIN * Q.DECREASE))
    held = other_sandbox.acquire(SD35)  # held while the account's minute drains ...
    assert held.reservation.window == math.ceil(after + state.hold)  # ... to the first window after
    later = held.reservation.window + 0.1
    other_sandbox.clock = lambda: later
    left = Q.window_budget(state.rpm, Q.window_of(later)) - 1  # 305/min is 5 a window, one of them reserved
    waits = [other_sandbox.acquire(SD35).wait for _ in range(6)]
    assert left == 4 and waits[:left] == [0] * left and all(wait > 0 for wait in waits[left:])


def test_an_unavailable_table_lets_the_call_through_and_counts_it(quota_env, world, monkeypatch):
    from img2img.aws import quota as adapter

    counted = []
    monkeypatch.setattr(adapter.metrics, "add_metric", lambda name, unit, value: counted.append(name))
    world.stub.add_response("invoke_model", sd35_ok())  # no quota table was created: every request fails
    calls = model_calls(world)

    world.run(upload(world, "q/open.png"))

    assert len(calls) == 1 and world.record("q/open.png")["status"] == "succeeded"
    assert "QuotaLimiterUnavailable" in counted


def test_no_table_no_limiter(world):
    assert world.pipeline.quota is None


def test_a_job_resuming_from_its_checkpoint_takes_no_slot(limited, deferrals, monkeypatch):
    from img2img.core.errors import transient

    store, failed = limited.pipeline.store, []
    put = store.put

    def output_put_fails_once(bucket, key, *args, **kwargs):
        if "_staging/" not in key and key.endswith(".png") and not failed:
            failed.append(key)
            raise transient("storage_error", "S3 SlowDown")
        return put(bucket, key, *args, **kwargs)

    monkeypatch.setattr(store, "put", output_put_fails_once)
    first = upload(limited, "q/one.png")
    limited.stub.add_response("invoke_model", sd35_ok())
    assert limited.run(first)["batchItemFailures"]  # paid for, checkpointed, then the output put failed
    calls = model_calls(limited)

    limited.run(upload(limited, "q/two.png"))  # spends nothing: the window's one slot is gone
    limited.run(first, receive_count=2)

    assert calls == [] and limited.record("q/one.png")["status"] == "succeeded"
    assert tickets(int(NOW)) == 2  # one.png's first delivery and two.png; the resumed delivery took none


def tickets(window, model=SD35):
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=QUOTA_TABLE, Key={"id": {"S": f"{model}#{window}"}}).get("Item")
    return int(item["n"]["N"]) if item else 0


def test_a_returning_job_holding_its_reservation_takes_no_new_ticket(limited, deferrals):
    first, second, third = (upload(limited, f"q/{n}.png") for n in ("one", "two", "three"))
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(first, second, third)
    assert [d["quota_reservation"]["window"] for d, _ in deferrals] == [int(NOW) + 1, int(NOW) + 2]
    assert [delay for _, delay in deferrals] == [1, 2]  # each to its own window, in line

    limited.pipeline.quota.clock = lambda: NOW + 1.3  # two.png's window, a little late
    limited.stub.add_response("invoke_model", sd35_ok())
    calls = model_calls(limited)
    limited.run(json.dumps(deferrals[0][0]))

    assert len(calls) == 1 and limited.record("q/two.png")["status"] == "succeeded"
    assert tickets(int(NOW) + 1) == 1  # only the reservation: the returning job took no ticket of its own


def test_a_fresh_upload_queues_behind_the_reserved_slots(limited, deferrals):
    first, second = upload(limited, "q/one.png"), upload(limited, "q/two.png")
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(first, second)  # two.png holds the next window
    limited.pipeline.quota.clock = lambda: NOW + 1.1
    calls = model_calls(limited)

    limited.run(upload(limited, "q/fresh.png"))

    assert calls == []  # the window's slot is two.png's
    assert deferrals[-1][0]["quota_reservation"]["window"] == int(NOW) + 2


def test_a_reservation_is_honoured_once_a_duplicate_delivery_takes_a_new_ticket(limited, deferrals):
    first, second = upload(limited, "q/one.png"), upload(limited, "q/two.png")
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(first, second)
    returning = json.dumps(deferrals[0][0])
    limited.pipeline.quota.clock = lambda: NOW + 1.2
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.pipeline.quota.claim(SD35, int(NOW) + 1, 1)  # the same message, delivered twice: one got there first
    calls = model_calls(limited)

    limited.run(returning)

    assert calls == [] and tickets(int(NOW) + 1) == 2  # a new ticket, over the window's budget: wait again
    assert deferrals[-1][0]["quota_reservation"]["window"] > int(NOW) + 1


def test_a_reservation_returning_too_late_is_given_up_for_a_new_ticket(limited, deferrals):
    from img2img.core import quota as Q

    first, second = upload(limited, "q/one.png"), upload(limited, "q/two.png")
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(first, second)
    late = NOW + 2 + Q.LATE + 0.1  # past window NOW+1 and its grace
    limited.pipeline.quota.clock = lambda: late
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(json.dumps(deferrals[0][0]))

    assert limited.record("q/two.png")["status"] == "succeeded"
    assert tickets(int(NOW) + 1) == 1 and tickets(Q.window_of(late)) == 1  # its old slot unused, a new ticket


def test_a_malformed_reservation_is_ignored_and_the_job_takes_a_ticket(limited):
    body = {**json.loads(upload(limited, "q/odd.png")), "quota_reservation": {"model_id": SD35, "window": "x"}}
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.run(json.dumps(body))
    assert limited.record("q/odd.png")["status"] == "succeeded" and tickets(int(NOW)) == 1


def test_a_table_failing_mid_reservation_fails_open(limited, monkeypatch):
    from botocore.exceptions import ClientError

    from img2img.aws import quota as adapter

    counted = []
    monkeypatch.setattr(adapter.metrics, "add_metric", lambda name, unit, value: counted.append(name))
    quota = limited.pipeline.quota
    monkeypatch.setattr(quota, "tail", lambda model_id: (_ for _ in ()).throw(
        ClientError({"Error": {"Code": "InternalServerError"}}, "GetItem")))
    limited.stub.add_response("invoke_model", sd35_ok())
    limited.stub.add_response("invoke_model", sd35_ok())
    calls = model_calls(limited)

    limited.run(upload(limited, "q/one.png"), upload(limited, "q/two.png"))

    assert len(calls) == 2 and "QuotaLimiterUnavailable" in counted  # unmetered, counted, not stopped


def test_under_the_limiter_botocore_never_retries_a_model_call_on_its_own(limited, settings_env, monkeypatch):
    """A throttled call retried inside botocore is a call no ticket admitted: with the limiter one attempt,
    the throttle comes back through the limiter; without it, bedrockMaxAttempts."""
    from img2img import assembly, settings

    assert limited.pipeline.model.max_attempts == 1
    monkeypatch.delenv("IMG2IMG_QUOTA_TABLE")
    settings.get_settings.cache_clear()
    assert assembly.model_call_attempts(settings.get_settings()) == settings.get_settings().bedrock_max_attempts > 1
