"""Synth helpers for the infra tests (a uniquely named module: `conftest` names clash across test dirs).

Bundling is skipped (`aws:cdk:bundling-stacks: []`) everywhere except test_bundling.py. Context starts
from cdk.json (defaults and feature flags), exactly like `npx cdk synth`, then per-variant overrides.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk.assertions import Template

import app as app_entry  # the real entry point (its context reading)
from img2img.operations import PROFILE_REGIONS
from infra import nag
from infra.config import PipelineConfig
from infra.regions import DEFAULT_BEDROCK_REGION
from infra.stack import Img2ImgStack

ROOT = Path(__file__).resolve().parents[2]
CDK_JSON_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
NO_BUNDLING = {"aws:cdk:bundling-stacks": []}

# A non-default deployment: inference profile, other region for Bedrock, x86_64 / 3.13, other sizes.
CUSTOM = {
    "modelId": "us.stability.sd3-5-large-v1:0",
    "bedrockRegion": "us-west-2",
    "architecture": "x86_64",
    "pythonVersion": "3.13",
    "workerMemoryMb": "2048",  # strings, as `-c key=value` passes them
    "workerTimeoutSeconds": "600",
    "batchSize": "2",
    "batchWindowSeconds": "5",
    "bedrockMaxConcurrency": "10",
    "logRetentionDays": "90",
    "maxReceiveCount": "3",
}
# Everything that adds resources: KMS, destroy, alarm e-mail + existing topic, event archive.
SECURE = {
    "encryption": "kms",
    "removalPolicy": "destroy",
    "alarmEmail": "ops@example.com",
    "alarmTopicArn": "arn:aws:sns:us-east-1:123456789012:existing-ops",
    "eventArchiveDays": 30,
}

# The HTTP API with API keys and CORS, and S3 -> EventBridge ingest instead of S3 -> SQS notifications.
API_KEY_EVENTBRIDGE = {
    "apiAuth": "api-key",
    "apiCorsOrigins": "https://app.example.com",
    "ingestMode": "eventbridge",
    "apiThrottleRateLimit": "5",
    "apiThrottleBurstLimit": "10",
    "outputPrefix": "generated/",
}


@dataclass
class Synth:
    app: cdk.App
    stack: Img2ImgStack
    config: PipelineConfig
    template: Template
    outdir: Path

    @property
    def resources(self) -> dict[str, dict]:
        return self.template.to_json()["Resources"]

    def logical_id(self, construct) -> str:
        child = getattr(construct.node, "default_child", None) or construct
        return self.stack.resolve(self.stack.get_logical_id(child))


def build(overrides: dict[str, Any] | None = None, *, outdir: Path, bundling: bool = False,
          with_nag: bool = False, env: cdk.Environment | None = None,
          ) -> tuple[cdk.App, Img2ImgStack, PipelineConfig]:
    context = {**CDK_JSON_CONTEXT, **(overrides or {})}
    if not bundling:
        context.update(NO_BUNDLING)
    app = cdk.App(context=context, outdir=str(outdir))
    config = app_entry.config_from(app)
    stack = Img2ImgStack(app, "Img2Img", config=config, env=env)
    if with_nag:
        nag.attach(app)
        nag.acknowledge(stack)
    return app, stack, config


def synth(overrides: dict[str, Any] | None, outdir: Path) -> Synth:
    app, stack, config = build(overrides, outdir=outdir)
    return Synth(app, stack, config, Template.from_stack(stack), outdir)


# ---- helpers ------------------------------------------------------------------------------------
def render(value: Any) -> Any:
    """CloudFormation intrinsics as readable strings: {"Ref": "AWS::Region"} -> "${AWS::Region}",
    GetAtt -> "${Logical.Attr}", Fn::Join -> the joined string. Lists and dicts recursively."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return f"${{{value['Ref']}}}"
        if set(value) == {"Fn::GetAtt"}:
            return f"${{{'.'.join(value['Fn::GetAtt'])}}}"
        if set(value) == {"Fn::Join"}:
            sep, parts = value["Fn::Join"]
            return sep.join(str(render(p)) for p in parts)
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v) for v in value]
    return value


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def of_type(synth: Synth, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in synth.resources.items() if v["Type"] == cfn_type}


def one(synth: Synth, cfn_type: str, prefix: str) -> tuple[str, dict]:
    found = {k: v for k, v in of_type(synth, cfn_type).items() if k.startswith(prefix)}
    assert len(found) == 1, f"expected one {cfn_type} named {prefix}*, found {sorted(found)}"
    return next(iter(found.items()))


def role_policies(synth: Synth, role_id: str) -> list[dict]:
    """The documents of the inline policies (AWS::IAM::Policy) attached to this role."""
    return [p["Properties"]["PolicyDocument"] for p in of_type(synth, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"]]


def worker_statements(synth: Synth) -> list[dict]:
    role_id, role = one(synth, "AWS::IAM::Role", "WorkerRole")
    assert "ManagedPolicyArns" not in role["Properties"], "the worker role must not use managed policies"
    assert "Policies" not in role["Properties"]
    assert not [m for m in of_type(synth, "AWS::IAM::ManagedPolicy").values()
                if {"Ref": role_id} in m["Properties"].get("Roles", [])], "no (overflow) managed policies"
    statements = [s for policy in role_policies(synth, role_id) for s in policy["Statement"]]
    assert statements and all(s["Effect"] == "Allow" for s in statements)
    return [render(s) for s in statements]


def actions(statement: dict) -> set[str]:
    a = statement["Action"]
    return set(a) if isinstance(a, list) else {a}


def resources(statement: dict) -> set[str]:
    r = statement["Resource"]
    return set(r) if isinstance(r, list) else {r}


def with_action(statements: list[dict], prefix: str) -> list[dict]:
    return [s for s in statements if any(a.startswith(prefix) for a in actions(s))]


def service_arns(models: dict[str, str] | list[str], region: str = DEFAULT_BEDROCK_REGION) -> set[str]:
    """What IAM must grant for Image Services models given as `us.` profile ids (rendered as above):
    the profile in the calling region and the foundation model in every region the profile routes to."""
    arns = set()
    for model_id in (models.values() if isinstance(models, dict) else models):
        base = model_id.removeprefix("us.")
        arns.add(f"arn:${{AWS::Partition}}:bedrock:{region}:${{AWS::AccountId}}:inference-profile/{model_id}")
        arns |= {f"arn:${{AWS::Partition}}:bedrock:{r}::foundation-model/{base}" for r in PROFILE_REGIONS}
    return arns
