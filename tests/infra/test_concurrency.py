"""The Bedrock budget (bedrockMaxConcurrency) split between the entry points: the worker's SQS event source,
the direct-invoke function's reserved concurrency, and the API function's."""
from __future__ import annotations

import pytest

from infra.config import PipelineConfig
from infra_synth import one, synth

pytestmark = pytest.mark.infra


def reserved(s, prefix: str):
    _, function = one(s, "AWS::Lambda::Function", prefix)
    return function["Properties"].get("ReservedConcurrentExecutions")


@pytest.mark.parametrize("budget,batch", [(1, 1), (2, 1), (8, 4), (9, 4), (10, 2), (64, 10), (1000, 10)])
def test_the_split_stays_within_the_budget_where_lambda_allows(budget, batch):
    c = PipelineConfig.from_context({"bedrockMaxConcurrency": budget, "batchSize": batch})
    assert c.direct_reserved_concurrency >= 1
    assert c.worker_bedrock_share + c.direct_reserved_concurrency == max(budget, 2)
    # the worker's invocations cover its share (Lambda's minimum of 2 may exceed it for tiny budgets)
    assert c.event_source_max_concurrency * c.batch_concurrency >= c.worker_bedrock_share
    # over the budget only by the rounding up to whole invocations, or by Lambda's minimum of 2
    assert c.bedrock_ceiling <= max(budget + batch - 1, 2 * batch + c.direct_reserved_concurrency)
    assert c.api_reserved_concurrency > budget


def test_default_functions_reserve_their_share(default):
    c = default.config
    assert reserved(default, "WorkerDirectFunction") == c.direct_reserved_concurrency == 2
    assert reserved(default, "ApiFunction") == c.api_reserved_concurrency == 18
    assert reserved(default, "WorkerFunction") is None  # bounded by its event source instead
    _, mapping = one(default, "AWS::Lambda::EventSourceMapping", "WorkerFunction")
    assert mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] * c.batch_size + 2 == c.bedrock_ceiling == 10


def test_custom_budget_moves_every_share(custom):
    assert custom.config.bedrock_max_concurrency == 10
    assert reserved(custom, "WorkerDirectFunction") == 2
    assert reserved(custom, "ApiFunction") == 20


def test_reservations_can_be_turned_off(tmp_path):
    s = synth({"reserveConcurrency": "false"}, tmp_path)
    assert reserved(s, "WorkerDirectFunction") is None and reserved(s, "ApiFunction") is None
