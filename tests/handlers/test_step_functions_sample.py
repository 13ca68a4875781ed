"""The sample state machine for direct invoke (docs/step-functions/img2img-direct.asl.json) and what the
function raises into it: a quota wait is waited out for exactly the limiter's `retry_after`, other transient
faults keep their Retry with backoff, permanent ones end the execution, and any execution name gives a
valid job id."""
from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from pathlib import Path

import pytest
from aws_world import INPUT, Context, model_calls, png_bytes, sd35_ok
from aws_world import RefusingQuota as Quota

from img2img.core.triggers import JOB_ID
from img2img.handlers import direct
from img2img.handlers.direct import InvalidJobError, QuotaWaitError, TransientJobError

ASL = Path(__file__).resolve().parents[2] / "docs" / "step-functions" / "img2img-direct.asl.json"
ROLE = "arn:aws:iam::123456789012:role/img2img-sfn"



def asl() -> dict:
    return json.loads(ASL.read_text())


def lambda_error(exc: BaseException) -> dict:
    """What Step Functions' lambda:invoke reports for a function that raised `exc` (Lambda's Python runtime:
    the Cause is the runtime's error payload, as JSON)."""
    payload = {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": "req-1",
               "stackTrace": ['  File "/var/task/img2img/handlers/direct.py", line 1, in handler\n']}
    return {"Error": type(exc).__name__, "Cause": json.dumps(payload)}


def refused(world, wait: int) -> QuotaWaitError:
    world.pipeline.quota = Quota(refusals=1, wait=wait)
    world.put("sfn/cat.png", png_bytes((256, 256)))
    calls = model_calls(world)
    with pytest.raises(QuotaWaitError) as raised:
        direct.handler({"source": f"s3://{INPUT}/sfn/cat.png", "params": {"prompt": "a cat"}}, Context())
    assert calls == []  # no model call to find out
    return raised.value


def test_the_sample_is_valid_asl_with_the_functions_error_names():
    states = asl()["States"]
    task = states[asl()["StartAt"]]
    assert task["Type"] == "Task" and task["Resource"] == "arn:aws:states:::lambda:invoke"
    retried = {name for r in task["Retry"] for name in r["ErrorEquals"]}
    caught = [c["ErrorEquals"] for c in task["Catch"]]
    assert TransientJobError.__name__ in retried and QuotaWaitError.__name__ not in retried  # no backoff guess
    assert [QuotaWaitError.__name__] in caught and [InvalidJobError.__name__] in caught
    assert caught[-1] == ["States.ALL"]  # after the named ones: Catch takes the first match
    [backoff] = [r for r in task["Retry"] if r["ErrorEquals"] == [TransientJobError.__name__]]
    assert backoff["BackoffRate"] > 1 and backoff["MaxAttempts"] >= 2
    choice = states[task["Next"]]
    assert choice["Type"] == "Choice" and {c["Variable"] for c in choice["Choices"]} == {"$.status"}
    assert {c["StringEquals"] for c in choice["Choices"]} == {"succeeded", "failed"}
    for state in states.values():  # every transition names a state that exists
        for target in [state.get("Next"), state.get("Default"), *[c["Next"] for c in state.get("Choices", [])],
                       *[c["Next"] for c in state.get("Catch", [])]]:
            assert target is None or target in states
        assert state.get("End") or state["Type"] in ("Fail", "Succeed", "Choice") or state.get("Next")


def test_a_quota_wait_says_how_long_in_json_and_is_still_a_transient_error(world):
    exc = refused(world, wait=9)
    assert isinstance(exc, TransientJobError)  # Python callers catching the transient error still do
    said = json.loads(str(exc))
    assert said["code"] == "quota_wait" and said["retry_after"] == exc.retry_after == 9
    assert "9 s" in said["message"]


def _path(doc, path: str):
    assert path.startswith("$."), path
    for part in path[2:].split("."):
        doc = doc[part]
    return doc


def _value(doc, expression: str):
    """The two forms the quota wait's Pass states use: a path, or States.StringToJson(path)."""
    parsed = re.fullmatch(r"States\.StringToJson\((\$[\w.]+)\)", expression)
    return json.loads(_path(doc, parsed.group(1))) if parsed else _path(doc, expression)


def test_the_wait_reads_retry_after_from_the_functions_error_and_tries_the_job_again(world):
    """Follows the sample from the Catch of QuotaWaitError to its Wait with what Lambda reports."""
    states = asl()["States"]
    [catch] = [c for c in states["Generate"]["Catch"] if c["ErrorEquals"] == [QuotaWaitError.__name__]]
    doc = {"source": f"s3://{INPUT}/sfn/cat.png", "params": {}}
    doc = {**doc, catch["ResultPath"][2:]: lambda_error(refused(world, wait=13))}
    state = states[catch["Next"]]
    while state["Type"] == "Pass":
        result = {name[:-2]: _value(doc, expression) for name, expression in state["Parameters"].items()}
        doc = {**copy.deepcopy(doc), state["ResultPath"][2:]: result}
        state = states[state["Next"]]
    assert state["Type"] == "Wait" and _path(doc, state["SecondsPath"]) == 13
    assert state["Next"] == "Generate"


# ---- the sample run by moto's ASL interpreter (needs antlr4-python3-runtime: moto[stepfunctions]) ------
@pytest.fixture
def machine(world, monkeypatch):
    """A state machine of the sample whose Lambda task runs direct.handler in-process, as Lambda would;
    Wait states record their seconds instead of sleeping."""
    pytest.importorskip("antlr4", reason="moto's Step Functions interpreter needs moto[stepfunctions]")
    import boto3
    from moto.core.config import default_user_config
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    def invoke(parameters, region, state_credentials):
        try:
            return {"StatusCode": 200, "Payload": direct.handler(json.loads(parameters["Payload"]), Context())}
        except Exception as exc:  # Lambda's runtime: an unhandled error is its payload and FunctionError
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": json.loads(lambda_error(exc)["Cause"])}

    waits: list[int] = []
    monkeypatch.setitem(default_user_config["stepfunctions"], "execute_state_machine", True)
    monkeypatch.setattr(lambda_eval_utils, "_invoke_lambda_function", invoke)
    monkeypatch.setattr(WaitFunction, "_wait_interval", lambda self, env, wait_seconds: waits.append(wait_seconds))
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = sfn.create_state_machine(name="img2img-direct", definition=ASL.read_text(), roleArn=ROLE)["stateMachineArn"]

    def run(name: str, job: dict) -> dict:
        execution = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(job))["executionArn"]
        for _ in range(200):
            described = sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.05)  # the interpreter runs the execution in a thread of its own
        raise AssertionError("the execution did not end")

    world.sfn_waits = waits
    return run


def test_the_state_machine_waits_out_the_quota_then_runs_the_job_once(world, machine):
    world.pipeline.quota = quota = Quota(refusals=1, wait=6)
    world.put("sfn/cat.png", png_bytes((256, 256)))
    calls = model_calls(world)
    world.stub.add_response("invoke_model", sd35_ok(seed=4))

    ended = machine("bildförsök-1", {"source": f"s3://{INPUT}/sfn/cat.png", "params": {"prompt": "a cat"}})

    assert ended["status"] == "SUCCEEDED", ended
    assert world.sfn_waits == [6] and len(quota.asked) == 2 and len(calls) == 1
    record = json.loads(ended["output"])
    assert record["status"] == "succeeded" and world.record("sfn/cat.png")["job_id"] == record["job_id"]
    # A non-ASCII execution name still names a valid job: the id is derived from the execution's ARN.
    assert JOB_ID.fullmatch(record["job_id"])
    assert record["job_id"] == "sfn-" + hashlib.sha256(ended["executionArn"].encode()).hexdigest()


def test_a_permanent_failure_ends_the_execution_without_waiting(world, machine):
    world.put("sfn/bad.png", b"not an image")
    ended = machine("bad-1", {"source": f"s3://{INPUT}/sfn/bad.png", "params": {"prompt": "x"}})
    assert ended["status"] == "FAILED" and ended.get("error") == "ImageGenerationFailed"
    assert world.sfn_waits == []
