"""Buckets: input (where users drop images), output (images + JSON records), access logs.

`inputBucketName` / `outputBucketName` mount the pipeline on buckets that already exist instead
(`Bucket.from_bucket_name`): CDK cannot change an imported bucket's policy, versioning, encryption, public
access block, lifecycle or logging, so those stay their owner's (docs/deploy.md "Existing buckets"). The
access-log bucket exists only while the stack owns a data bucket.

The buckets the stack creates block public access and deny non-TLS requests. Input and output are
encrypted with S3-managed keys, or with one customer-managed KMS key (rotation on) when `encryption=kms`.
The log bucket always uses S3-managed keys: S3 server access logging cannot deliver into an SSE-KMS bucket.
"""
from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from img2img.core.records import STAGING_DIR
from infra.config import (  # the local stack applies the same rules (pure module)
    ABORT_INCOMPLETE_MULTIPART_DAYS,
    NONCURRENT_VERSION_EXPIRATION_DAYS,
    STAGING_EXPIRATION_DAYS,
    PipelineConfig,
)

ACCESS_LOG_EXPIRATION_DAYS = 365
MINIMUM_TLS_VERSION = 1.2


def removal_policy(config: PipelineConfig) -> RemovalPolicy:
    return RemovalPolicy.DESTROY if config.removal_policy == "destroy" else RemovalPolicy.RETAIN


class Storage(Construct):
    """The pipeline's buckets and, with `encryption=kms`, the customer-managed key."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig) -> None:
        super().__init__(scope, construct_id)
        destroy = config.removal_policy == "destroy"
        policy = removal_policy(config)

        self.key: kms.Key | None = None
        if config.encryption == "kms":
            self.key = kms.Key(
                self, "Key",
                description=f"{config.service_name}: buckets, idempotency table and alarm topic",
                enable_key_rotation=True,
                removal_policy=policy,
                pending_window=Duration.days(7) if destroy else None,
            )

        common = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=MINIMUM_TLS_VERSION,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=policy,
            auto_delete_objects=destroy,
        )

        # Buckets that exist already: the pipeline only reads/writes objects and subscribes to their events.
        self.imported: dict[str, s3.IBucket] = {}
        for construct_id, name in (("ExistingInputBucket", config.input_bucket_name),
                                   ("ExistingOutputBucket", config.output_bucket_name)):
            if name:
                self.imported[construct_id] = s3.Bucket.from_bucket_name(self, construct_id, name)
        existing_input = self.imported.get("ExistingInputBucket")
        existing_output = self.imported.get("ExistingOutputBucket")

        self.log_bucket: s3.Bucket | None = None
        if existing_input and existing_output:
            self.input_bucket, self.output_bucket = existing_input, existing_output
            return
        self.log_bucket = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-access-logs",
                expiration=Duration.days(ACCESS_LOG_EXPIRATION_DAYS),
                abort_incomplete_multipart_upload_after=Duration.days(ABORT_INCOMPLETE_MULTIPART_DAYS),
            )],
            **common,
        )

        def data_bucket(construct_id: str, log_prefix: str,
                        extra_rules: tuple[s3.LifecycleRule, ...] = ()) -> s3.Bucket:
            return s3.Bucket(
                self, construct_id,
                versioned=True,
                encryption=s3.BucketEncryption.KMS if self.key else s3.BucketEncryption.S3_MANAGED,
                encryption_key=self.key,
                bucket_key_enabled=True if self.key else None,
                server_access_logs_bucket=self.log_bucket,
                server_access_logs_prefix=log_prefix,
                lifecycle_rules=[s3.LifecycleRule(
                    id="expire-noncurrent-and-abort-multipart",
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_EXPIRATION_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(ABORT_INCOMPLETE_MULTIPART_DAYS),
                ), *extra_rules],
                **common,
            )

        self.input_bucket: s3.IBucket = existing_input or data_bucket("InputBucket", "input/")
        self.output_bucket: s3.IBucket = existing_output or data_bucket("OutputBucket", "output/", (s3.LifecycleRule(
            id="expire-staged-model-answers",
            prefix=f"{config.output_prefix}{STAGING_DIR}",
            expiration=Duration.days(STAGING_EXPIRATION_DAYS),
            noncurrent_version_expiration=Duration.days(1),
        ),))

    def owns(self, bucket: s3.IBucket) -> bool:
        """Whether the stack created this bucket (policies, lifecycle and encryption are then its own)."""
        return bucket not in self.imported.values()
