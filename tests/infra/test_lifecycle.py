"""The daily lifecycle check in the template: its schedule, its role (exactly), and the alarm on its metrics."""
from __future__ import annotations

import pytest

from img2img.lifecycle import ALARMED_KINDS, METRICS
from infra_synth import as_list, of_type, render

pytestmark = pytest.mark.infra


def lifecycle_function(synth):
    [(lid, fn)] = [(k, v) for k, v in of_type(synth, "AWS::Lambda::Function").items()
                   if v["Properties"].get("Handler") == "img2img.handlers.lifecycle_check.handler"]
    return lid, fn


def test_a_daily_schedule_invokes_the_check(default):
    lid, _ = lifecycle_function(default)
    [rule] = [r for r in of_type(default, "AWS::Events::Rule").values()
              if r["Properties"].get("ScheduleExpression")]
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"
    assert render(rule["Properties"]["Targets"][0]["Arn"]) == f"${{{lid}.Arn}}"


def test_its_role_may_only_read_lifecycles_probe_the_configured_models_and_publish(default):
    _, fn = lifecycle_function(default)
    role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [p for t in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") for p in of_type(default, t).values()
                if {"Ref": role} in p["Properties"].get("Roles", [])]
    granted = {}
    for s in (s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]):
        for action in as_list(s["Action"]):
            granted.setdefault(action, set()).update(map(str, render(as_list(s["Resource"]))))
    region = default.config.bedrock_region
    bases = {m.partition(".")[2] if m.startswith("us.") else m for m in default.config.invoked_model_ids}
    assert granted["bedrock:GetFoundationModel"] == {
        f"arn:${{AWS::Partition}}:bedrock:{region}::foundation-model/{b}" for b in bases}
    [worker_grant] = default.resources[default.logical_id(default.stack.worker.bedrock_policy)]["Properties"][
        "PolicyDocument"]["Statement"]
    assert granted["bedrock:InvokeModel"] == set(map(str, render(worker_grant["Resource"])))  # the worker's ARNs
    assert granted["bedrock:ListInferenceProfiles"] == granted["servicequotas:ListServiceQuotas"] == {"*"}
    assert len(granted["events:PutEvents"]) == 1
    assert set(granted) == {"bedrock:GetFoundationModel", "bedrock:InvokeModel", "bedrock:ListInferenceProfiles",
                            "servicequotas:ListServiceQuotas", "events:PutEvents", "logs:CreateLogStream",
                            "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def test_the_alarm_fires_on_any_alarmed_kind_and_notifies_the_topic(secure):
    [alarm] = [a for a in of_type(secure, "AWS::CloudWatch::Alarm").values()
               if "img2img doctor" in a["Properties"].get("AlarmDescription", "")]
    props = alarm["Properties"]
    assert props["Threshold"] == 0 and props["ComparisonOperator"] == "GreaterThanThreshold"
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m}
    assert names == {METRICS[k] for k in ALARMED_KINDS}
    assert all(m["MetricStat"]["Period"] == 86400 for m in props["Metrics"] if "MetricStat" in m)
    assert props["AlarmActions"] and props["OKActions"]
