"""The DynamoDB tables: Powertools idempotency records, and the per-model quota's counters.

Both have partition key `id` (string) and TTL attribute `expiration`. The quota is a table of its own
rather than a key prefix in the idempotency table: its items are hot (one write per model call), live
for a minute and are worth nothing later, so they stay out of the idempotency table's point-in-time
backups, and the functions' grant on it is only the two calls the limiter makes (aws/quota.py).
"""
from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from img2img.tables import PARTITION_KEY, TTL_ATTRIBUTE
from infra.config import PipelineConfig
from infra.storage import removal_policy


def pipeline_table(scope: Construct, *, key: kms.IKey | None, removal: RemovalPolicy) -> dynamodb.Table:
    """A table of the pipeline's key schema (img2img/tables.py): on demand, TTL'd, point-in-time recovery
    (cdk-nag asks for backups; for the quota's counters, which expire within minutes, PITR costs only per
    GB stored, a few KB), encrypted with the pipeline key when there is one."""
    return dynamodb.Table(
        scope, "Table",
        partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=TTL_ATTRIBUTE,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True),
        encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED if key else dynamodb.TableEncryption.AWS_MANAGED,
        encryption_key=key,
        removal_policy=removal,
    )


class IdempotencyTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        self.table = pipeline_table(self, key=key, removal=removal_policy(config))


class QuotaTable(Construct):
    """Per-model request counters and rates (lambda_src/img2img/aws/quota.py), created when modelQuotas is set."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        self.table = pipeline_table(self, key=key, removal=RemovalPolicy.DESTROY)  # nothing in it outlives a minute
