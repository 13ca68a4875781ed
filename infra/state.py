"""The Powertools idempotency table: partition key `id` (string), TTL attribute `expiration`."""
from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import PipelineConfig
from infra.storage import removal_policy

PARTITION_KEY = "id"
TTL_ATTRIBUTE = "expiration"


class IdempotencyTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig,
                 key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self, "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            encryption=(dynamodb.TableEncryption.CUSTOMER_MANAGED if key
                        else dynamodb.TableEncryption.AWS_MANAGED),
            encryption_key=key,
            removal_policy=removal_policy(config),
        )
