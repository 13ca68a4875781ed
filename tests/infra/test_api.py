"""The HTTP API: REST API, stage, methods, auth, throttling, logs, gateway responses, its function and role."""
from __future__ import annotations

import json

import pytest

from infra_synth import as_list, of_type, one, render

pytestmark = pytest.mark.infra


def methods(synth) -> dict[str, dict]:
    resources = of_type(synth, "AWS::ApiGateway::Resource")

    def path(rid) -> str:
        if rid not in resources:
            return ""
        props = resources[rid]["Properties"]
        return path(props["ParentId"].get("Ref")) + "/" + props["PathPart"]

    return {f"{m['Properties']['HttpMethod']} {path(m['Properties']['ResourceId'].get('Ref')) or '/'}": m["Properties"]
            for m in of_type(synth, "AWS::ApiGateway::Method").values()}


def statements(synth) -> dict[str, dict]:
    _, policy = one(synth, "AWS::IAM::Policy", "ApiRoleDefaultPolicy")
    return {s.get("Sid"): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_routes_use_iam_auth_and_the_api_function_by_default(default):
    found = methods(default)
    # The same paths as the handler's routes (API Gateway passes the resource path without the stage).
    from img2img.handlers.api import app

    assert set(found) == {"POST /v1/generations", "POST /v1/jobs", "GET /v1/jobs/{job_id}", "POST /v1/uploads",
                          "POST /v1/bulk-jobs", "GET /v1/bulk-jobs/{bulk_id}"}
    assert {f"{r.method} {r.openapi_path}" for r in app._static_routes + app._dynamic_routes} == set(found)
    function_id, _ = one(default, "AWS::Lambda::Function", "ApiFunction")
    for p in found.values():
        assert p["AuthorizationType"] == "AWS_IAM" and not p.get("ApiKeyRequired")
        assert p["Integration"]["Type"] == "AWS_PROXY"
        assert function_id in json.dumps(p["Integration"]["Uri"])
        assert "RequestValidatorId" in p
    assert not of_type(default, "AWS::ApiGateway::UsagePlan") and not of_type(default, "AWS::ApiGateway::ApiKey")


def test_api_key_mode_adds_a_usage_plan_and_key_and_cors(api_key_eventbridge):
    found = methods(api_key_eventbridge)
    for name, p in found.items():
        if name.startswith("OPTIONS"):
            assert p["AuthorizationType"] == "NONE" and p["Integration"]["Type"] == "MOCK"
        else:
            assert p["AuthorizationType"] == "NONE" and p["ApiKeyRequired"] is True
    assert any(name.startswith("OPTIONS") for name in found)
    (plan,) = of_type(api_key_eventbridge, "AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["Throttle"] == {"RateLimit": 5, "BurstLimit": 10}
    assert len(of_type(api_key_eventbridge, "AWS::ApiGateway::ApiKey")) == 1
    assert "ApiKeyId" in api_key_eventbridge.template.to_json()["Outputs"]


def test_stage_throttling_tracing_and_json_access_logs(default):
    _, stage = one(default, "AWS::ApiGateway::Stage", "ApiDeploymentStage")
    p = stage["Properties"]
    assert p["StageName"] == "prod" and p["TracingEnabled"] is True
    [settings] = p["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (20, 40)
    log_id, _ = one(default, "AWS::Logs::LogGroup", "ApiAccessLogs")
    assert p["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": [log_id, "Arn"]}
    assert json.loads(p["AccessLogSetting"]["Format"])["requestId"] == "$context.requestId"


def test_binary_images_and_gateway_errors_in_the_api_format(default):
    _, api = one(default, "AWS::ApiGateway::RestApi", "Api")
    assert api["Properties"]["BinaryMediaTypes"] == ["image/*"]
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    responses = {r["Properties"]["ResponseType"]: r["Properties"]
                 for r in of_type(default, "AWS::ApiGateway::GatewayResponse").values()}
    too_large = responses["REQUEST_TOO_LARGE"]
    assert too_large["StatusCode"] == "413"
    assert json.loads(too_large["ResponseTemplates"]["application/json"])["error"]["code"] == "image_too_large"
    assert json.loads(responses["THROTTLED"]["ResponseTemplates"]["application/json"])["error"]["code"] == "throttled"


def test_api_function_environment_timeout_and_tracing(default):
    _, fn = one(default, "AWS::Lambda::Function", "ApiFunction")
    p = fn["Properties"]
    assert p["Handler"] == "img2img.handlers.api.handler"
    assert p["Timeout"] == default.config.api_sync_budget_seconds + 5 <= 34
    assert p["TracingConfig"] == {"Mode": "Active"}
    env = p["Environment"]["Variables"]
    _, worker = one(default, "AWS::Lambda::Function", "WorkerFunction")
    bulk = {name: env.pop(name) for name in ("IMG2IMG_BULK_FUNCTION_ARN", "IMG2IMG_BULK_ROLE_ARN")}
    assert env == worker["Properties"]["Environment"]["Variables"]  # one Settings for both functions
    # ...and where the bulk jobs it submits run (infra/bulk.py)
    assert "BulkFunction" in json.dumps(bulk["IMG2IMG_BULK_FUNCTION_ARN"])
    assert "BulkBatchOperationsRole" in json.dumps(bulk["IMG2IMG_BULK_ROLE_ARN"])
    assert env["IMG2IMG_API_PREFIX"] == "api/" and env["IMG2IMG_API_SYNC_BUDGET_SECONDS"] == "25"
    assert env["IMG2IMG_EXCLUDED_PREFIXES"] == "api/"  # uploads under api/ never run by themselves


def test_api_role_is_least_privilege(default):
    found = statements(default)
    input_id, _ = one(default, "AWS::S3::Bucket", "StorageInputBucket")
    output_id, _ = one(default, "AWS::S3::Bucket", "StorageOutputBucket")
    res = lambda sid: [render(r) for r in as_list(found[sid]["Resource"])]  # noqa: E731
    assert res("WriteApiInputs") == [f"${{{input_id}.Arn}}/api/*"]
    assert sorted(as_list(found["WriteApiInputs"]["Action"])) == ["s3:DeleteObject", "s3:PutObject"]
    assert res("PresignUploads") == [f"${{{input_id}.Arn}}/uploads/*"]
    assert res("WriteApiOutputs") == [f"${{{output_id}.Arn}}/api/*"]
    assert as_list(found["ReadOutputs"]["Action"]) == ["s3:GetObject"]
    assert as_list(found["QueueJobs"]["Action"]) == ["sqs:SendMessage"]
    # The sync route queues its job and waits for the worker's record: the API never calls Bedrock.
    assert not any(str(a).startswith("bedrock:") for s in found.values() for a in as_list(s["Action"]))
    assert not any(a.endswith("*") for s in found.values() for a in as_list(s["Action"])
                   if not a.startswith(("xray:", "logs:")))
    _, role = one(default, "AWS::IAM::Role", "ApiRole")
    assert "ManagedPolicyArns" not in role["Properties"]


def test_output_prefix_scopes_the_api_output_writes(api_key_eventbridge):
    output_id, _ = one(api_key_eventbridge, "AWS::S3::Bucket", "StorageOutputBucket")
    found = statements(api_key_eventbridge)
    assert [render(r) for r in as_list(found["WriteApiOutputs"]["Resource"])] == [
        f"${{{output_id}.Arn}}/generated/api/*"]


def test_api_url_output(default):
    out = default.template.to_json()["Outputs"]
    rest_id, _ = one(default, "AWS::ApiGateway::RestApi", "Api")
    assert render(out["ApiUrl"]["Value"]).startswith(f"https://${{{rest_id}}}.execute-api.")
    stage_id, _ = one(default, "AWS::ApiGateway::Stage", "ApiDeploymentStage")
    assert render(out["ApiUrl"]["Value"]).endswith(f"/${{{stage_id}}}/")  # the stage name: prod


def test_kms_key_is_granted_to_the_api_function(secure):
    found = statements(secure)
    key_id, _ = one(secure, "AWS::KMS::Key", "StorageKey")
    assert found["UsePipelineKey"]["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
