"""The per-model quota in the stack: its table, the worker's grant on it and the environment that names it."""
from __future__ import annotations

import json

import pytest

from infra.config import ConfigError, PipelineConfig
from infra_synth import of_type, one, synth, worker_statements

pytestmark = pytest.mark.infra

QUOTAS = {"default": 60, "stability.sd3-5-large-v1:0": 30}


@pytest.fixture(scope="module")
def quotas(tmp_path_factory):
    return synth({"modelQuotas": json.dumps(QUOTAS)}, tmp_path_factory.mktemp("quotas"))  # as -c passes it


def env_of(synth, prefix: str) -> dict:
    return one(synth, "AWS::Lambda::Function", prefix)[1]["Properties"]["Environment"]["Variables"]


def test_quotas_get_a_ttl_table_of_their_own(quotas):
    table_id, table = one(quotas, "AWS::DynamoDB::Table", "WorkerQuotaTable")
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert len(of_type(quotas, "AWS::DynamoDB::Table")) == 2  # and the idempotency table


@pytest.mark.parametrize("function", ["WorkerFunction", "WorkerDirectFunction"])
def test_worker_and_direct_invoke_name_the_table_and_the_quotas(quotas, function):
    table_id, _ = one(quotas, "AWS::DynamoDB::Table", "WorkerQuotaTable")
    env = env_of(quotas, function)
    assert env["IMG2IMG_QUOTA_TABLE"] == {"Ref": table_id}
    assert json.loads(env["IMG2IMG_MODEL_QUOTAS"]) == QUOTAS


def test_the_worker_role_may_take_tickets_and_lower_the_rate_on_that_table_only(quotas):
    table_id, _ = one(quotas, "AWS::DynamoDB::Table", "WorkerQuotaTable")
    granted = [s for s in worker_statements(quotas) if s.get("Sid") == "PerModelQuota"]
    assert len(granted) == 1
    assert sorted(granted[0]["Action"]) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    assert granted[0]["Resource"] == f"${{{table_id}.Arn}}"


def test_without_quotas_no_table_no_limiter(default):
    assert not [k for k in of_type(default, "AWS::DynamoDB::Table") if k.startswith("WorkerQuota")]
    env = env_of(default, "WorkerFunction")
    assert "IMG2IMG_QUOTA_TABLE" not in env and "IMG2IMG_MODEL_QUOTAS" not in env


@pytest.mark.parametrize("bad", ['{"stability.sd3-5-large-v1:0": 0}', '{"default": "many"}'])
def test_a_malformed_quota_is_refused_at_synth(bad):
    with pytest.raises(ConfigError, match="modelQuotas"):
        PipelineConfig.from_context({"modelQuotas": bad})


def test_every_call_the_limiter_makes_is_granted(quotas):
    """moto does not enforce IAM: record what the adapter calls and check it against the grant."""
    import boto3
    from moto import mock_aws

    from img2img.aws.quota import DynamoDBQuota
    from img2img.core.quota import Budgets

    granted = {a for s in worker_statements(quotas) if s.get("Sid") == "PerModelQuota" for a in s["Action"]}
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName="q", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")
        called = []
        dynamodb.meta.events.register("before-call.dynamodb.*",
                                      lambda model, **kw: called.append(f"dynamodb:{model.name}"))
        limiter = DynamoDBQuota("q", Budgets.from_config({"default": 1}), dynamodb=dynamodb)
        limiter.acquire("m")
        limiter.acquire("m")  # refused
        limiter.throttled("m")
    assert set(called) == {"dynamodb:GetItem", "dynamodb:UpdateItem"} and set(called) <= granted


def test_cdk_nag_finds_nothing_new_with_quotas(tmp_path):
    from test_nag import report

    from infra_synth import build

    app, _, _ = build({"modelQuotas": QUOTAS}, outdir=tmp_path, with_nag=True)
    app.synth()  # raises on any unacknowledged finding
    (nag,) = [p for p in report(tmp_path)["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    assert nag["violations"] == []
