"""Alarms, dashboard and the alarm topic."""
from __future__ import annotations

import pytest

from infra_synth import of_type, one, render

pytestmark = pytest.mark.infra

ALARMS = ("DlqNotEmpty", "QueueBacklog", "WorkerErrors", "InternalErrors", "WorkerThrottles",
          "BedrockThrottling", "BedrockLatency", "ContentFilterRate",
          # the other entry points
          "ApiServerErrors", "ApiLatency", "ApiFunctionErrors", "ApiFunctionThrottles", "DirectFunctionErrors",
          "DirectFunctionThrottles", "ModelLifecycle", "EventsFailed", "RequestedRuleFailedInvocations")


def alarm(synth, name: str) -> dict:
    return one(synth, "AWS::CloudWatch::Alarm", f"Monitoring{name}")[1]["Properties"]


def test_exactly_the_expected_alarms(default):
    assert len(of_type(default, "AWS::CloudWatch::Alarm")) == len(ALARMS)
    for name in ALARMS:
        props = alarm(default, name)
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        assert props["TreatMissingData"] == "notBreaching"
        assert props["AlarmDescription"]


def test_dlq_has_messages(default):
    dlq_id, _ = one(default, "AWS::SQS::Queue", "IngestDeadLetterQueue")
    props = alarm(default, "DlqNotEmpty")
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
    assert props["Threshold"] == 0


def test_age_of_oldest_job(default):
    queue_id, _ = one(default, "AWS::SQS::Queue", "IngestJobQueue")
    props = alarm(default, "QueueBacklog")
    assert props["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    assert props["Threshold"] == default.config.queue_age_alarm_seconds == 1800


@pytest.mark.parametrize("name,metric,function", [
    ("WorkerErrors", "Errors", "WorkerFunction"), ("WorkerThrottles", "Throttles", "WorkerFunction"),
    ("ApiFunctionErrors", "Errors", "ApiFunction"), ("ApiFunctionThrottles", "Throttles", "ApiFunction"),
    ("DirectFunctionErrors", "Errors", "WorkerDirectFunction"),
    ("DirectFunctionThrottles", "Throttles", "WorkerDirectFunction")])
def test_every_function_errors_and_throttles(default, name, metric, function):
    fn_id, _ = one(default, "AWS::Lambda::Function", function)
    props = alarm(default, name)
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("AWS/Lambda", metric, "Sum")
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": fn_id}}]
    assert props["Threshold"] == 0


def test_api_5xx_and_latency_on_the_stage(default):
    rest_id, _ = one(default, "AWS::ApiGateway::RestApi", "Api")
    stage_id, _ = one(default, "AWS::ApiGateway::Stage", "ApiDeploymentStage")
    for name, metric in (("ApiServerErrors", "5XXError"), ("ApiLatency", "Latency")):
        props = alarm(default, name)
        assert (props["Namespace"], props["MetricName"]) == ("AWS/ApiGateway", metric)
        dims = {d["Name"]: render(d["Value"]) for d in props["Dimensions"]}
        assert set(dims) == {"ApiName", "Stage"} and dims["Stage"] == f"${{{stage_id}}}"
    assert alarm(default, "ApiServerErrors")["Threshold"] == 0
    latency = alarm(default, "ApiLatency")
    assert latency["ExtendedStatistic"] == "p90"
    assert latency["Threshold"] == default.config.api_sync_budget_seconds * 1000 == 25_000
    assert rest_id


def test_failed_event_publishing_and_rule_deliveries(default, api_key_eventbridge):
    props = alarm(default, "EventsFailed")
    assert (props["Namespace"], props["MetricName"]) == ("BedrockImg2Img", "EventsFailed")
    assert props["Threshold"] == 0
    bus_id, _ = one(default, "AWS::Events::EventBus", "EventsBus")
    rule_id, _ = one(default, "AWS::Events::Rule", "EventRulesRequested")
    requested = alarm(default, "RequestedRuleFailedInvocations")
    assert (requested["Namespace"], requested["MetricName"]) == ("AWS/Events", "FailedInvocations")
    assert {d["Name"]: d["Value"] for d in requested["Dimensions"]} == {
        "RuleName": {"Ref": rule_id}, "EventBusName": {"Ref": bus_id}}  # a custom bus's rule has both
    # ingestMode=eventbridge adds the uploads rule, on the default bus (RuleName only)
    uploads_rule, _ = one(api_key_eventbridge, "AWS::Events::Rule", "EventRulesObjectCreated")
    uploads = alarm(api_key_eventbridge, "ObjectCreatedRuleFailedInvocations")
    assert uploads["Dimensions"] == [{"Name": "RuleName", "Value": {"Ref": uploads_rule}}]
    assert not [k for k in of_type(default, "AWS::CloudWatch::Alarm") if "ObjectCreated" in k]


def test_a_single_internal_error_in_five_minutes_alarms(default):
    """internal_error outcomes are defects (docs/errors.md): the first one alarms, whichever function had it."""
    props = alarm(default, "InternalErrors")
    assert (props["Namespace"], props["MetricName"], props["Statistic"]) == ("BedrockImg2Img", "InternalErrors",
                                                                            "Sum")
    assert props["Dimensions"] == [{"Name": "service", "Value": "bedrock-img2img"}]
    assert (props["Period"], props["EvaluationPeriods"]) == (300, 1)
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)  # a count >= 1


def test_bedrock_throttling_and_latency_from_powertools_metrics(default):
    service = [{"Name": "service", "Value": "bedrock-img2img"}]
    throttles = alarm(default, "BedrockThrottling")
    assert (throttles["Namespace"], throttles["MetricName"]) == ("BedrockImg2Img", "BedrockThrottles")
    assert throttles["Dimensions"] == service
    latency = alarm(default, "BedrockLatency")
    assert (latency["Namespace"], latency["MetricName"]) == ("BedrockImg2Img", "BedrockLatency")
    assert latency["Dimensions"] == service
    assert latency["ExtendedStatistic"] == "p90"
    assert latency["Threshold"] == 90_000  # milliseconds


def test_content_filter_rate_expression(default):
    props = alarm(default, "ContentFilterRate")
    metrics = {m["Id"]: m for m in props["Metrics"]}
    expression = next(m for m in props["Metrics"] if "Expression" in m)
    assert "100 * filtered / (generated + filtered)" in expression["Expression"]
    assert expression["ReturnData"] is True
    for metric_id, name in (("generated", "ImagesGenerated"), ("filtered", "ImagesFiltered")):
        stat = metrics[metric_id]["MetricStat"]
        assert stat["Metric"]["MetricName"] == name
        assert stat["Metric"]["Namespace"] == "BedrockImg2Img"
        assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": "bedrock-img2img"}]
        assert stat["Stat"] == "Sum"
    assert props["Threshold"] == default.config.filter_rate_alarm_percent


def test_dashboard_shows_every_metric(default):
    (dashboard,) = of_type(default, "AWS::CloudWatch::Dashboard").values()
    body = render(dashboard["Properties"]["DashboardBody"])
    for name in ("ImagesGenerated", "ImagesFiltered", "ImagesInvalid", "ImagesFailed", "InternalErrors",
                 "BedrockLatency",
                 "BedrockThrottles", "ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible",
                 "Errors", "Throttles", "Duration",
                 "5XXError", "4XXError", "Count", "Latency", "IntegrationLatency", "ConcurrentExecutions",
                 "EventsFailed", "FailedInvocations", "Invocations"):
        assert f'"{name}"' in body, name
    for function in ("WorkerFunction", "WorkerDirectFunction", "ApiFunction"):
        assert f"${{{one(default, 'AWS::Lambda::Function', function)[0]}}}" in body, function


def test_no_topic_and_no_actions_unless_configured(default):
    assert not of_type(default, "AWS::SNS::Topic")
    assert not of_type(default, "AWS::SNS::Subscription")
    for props in (a["Properties"] for a in of_type(default, "AWS::CloudWatch::Alarm").values()):
        assert "AlarmActions" not in props


def test_topic_with_email_encrypted_and_wired_to_every_alarm(secure):
    topic_id, topic = one(secure, "AWS::SNS::Topic", "MonitoringAlarmTopic")
    key_id, key = one(secure, "AWS::KMS::Key", "StorageKey")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    # CloudWatch may use the key to publish to the encrypted topic
    assert any(s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
               for s in key["Properties"]["KeyPolicy"]["Statement"])
    (subscription,) = of_type(secure, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"
    assert subscription["Properties"]["TopicArn"] == {"Ref": topic_id}
    (policy,) = of_type(secure, "AWS::SNS::TopicPolicy").values()
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy["Properties"]["PolicyDocument"]["Statement"])
    for props in (a["Properties"] for a in of_type(secure, "AWS::CloudWatch::Alarm").values()):
        assert {"Ref": topic_id} in props["AlarmActions"]
        assert "arn:aws:sns:us-east-1:123456789012:existing-ops" in props["AlarmActions"]
        assert {"Ref": topic_id} in props["OKActions"]
