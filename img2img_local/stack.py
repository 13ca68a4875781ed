"""The whole pipeline on loopback: moto (S3, SQS, DynamoDB, EventBridge), the offline Bedrock engine and
the real worker handler behind an emulated SQS event source mapping.

Resources mirror the CDK stack (infra/storage.py, ingest.py, state.py, events.py, worker.py) and come
from the same PipelineConfig; the worker gets the same environment as in Lambda. Only the standard
AWS_ENDPOINT_URL* variables and fake credentials differ, so production code never branches on "local".

moto keeps its state in process-global backends: run one LocalStack per process at a time.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import socket
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from img2img.core.records import STAGING_DIR
from img2img.core.triggers import REQUESTED_EVENT
from img2img.tables import PARTITION_KEY, TTL_ATTRIBUTE
from img2img_local.batch_operations import BatchOperations
from img2img_local.engine import EngineConfig, EngineServer
from img2img_local.event_source import FAKE_CREDENTIALS, SqsEventSource
from img2img_local.lambda_runtime import FunctionSpec
from img2img_local.project import PipelineConfig
from img2img_local.signing import certify_kms_key
from infra.config import (
    ABORT_INCOMPLETE_MULTIPART_DAYS,
    NONCURRENT_VERSION_EXPIRATION_DAYS,
    STAGING_EXPIRATION_DAYS,
    notification_suffixes,
)

log = logging.getLogger(__name__)

WORKER_HANDLER = "img2img.handlers.sqs_worker.handler"
BULK_ENQUEUE_HANDLER = "img2img.handlers.bulk_enqueue.handler"
REGION = "us-east-1"
LOOPBACK = "127.0.0.1"
DEFAULT_VISIBILITY_TIMEOUT_SECONDS = 20
JOB_RETENTION_SECONDS = 4 * 24 * 3600  # as infra/ingest.py
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
ENV_FILE_KEYS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL_BEDROCK",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "IMG2IMG_INPUT_BUCKET",
                 "IMG2IMG_OUTPUT_BUCKET", "IMG2IMG_EVENTS_QUEUE_URL", "IMG2IMG_JOB_QUEUE_URL", "IMG2IMG_DLQ_URL",
                 "IMG2IMG_EVENT_BUS_NAME", "IMG2IMG_API_URL", "IMG2IMG_IDEMPOTENCY_TABLE")


class StackError(RuntimeError):
    """The local stack could not start (a port in use, a service that did not come up)."""



@dataclass(frozen=True)
class LocalResources:
    """Names and URLs of what the stack created."""

    input_bucket: str
    output_bucket: str
    job_queue_url: str
    job_queue_arn: str
    dlq_url: str
    dlq_arn: str
    events_queue_url: str
    idempotency_table: str
    event_bus_name: str
    events_rule_name: str
    function_name: str
    requested_rule_name: str = ""
    # C2PA signing as in AWS: an ECC_NIST_P256 KMS key (moto's) and its chain in an SSM parameter,
    # certified by a throwaway CA (img2img_local/signing.py: NOT TRUSTED).
    c2pa_key_arn: str = ""
    c2pa_chain_parameter: str = ""
    quota_table: str = ""  # per-model request budgets (lambda_src/img2img/aws/quota.py), with modelQuotas


class LocalStack:
    """Start with `start()` (or `with LocalStack(config) as stack:`); `stop()` leaves nothing running."""

    def __init__(self, config: PipelineConfig, *, port: int = 0, engine_port: int = 0,
                 engine_config: EngineConfig | None = None,
                 visibility_timeout_seconds: int = DEFAULT_VISIBILITY_TIMEOUT_SECONDS,
                 handler: str = WORKER_HANDLER, name_prefix: str = "img2img-local",
                 attach_worker: bool = True, serve_api: bool = True, api_port: int = 0) -> None:
        self.config = config
        self.port = port
        self.engine_port = engine_port
        self.engine_config = engine_config if engine_config is not None else EngineConfig()
        self.visibility_timeout_seconds = visibility_timeout_seconds
        self.handler = handler
        self.name_prefix = name_prefix
        self.attach_worker = attach_worker
        self.serve_api = serve_api
        self.api_port = api_port
        self.api = None  # img2img_local.api_server.LocalApi when serve_api
        self.endpoint_url = ""
        self.engine_url = ""
        self.resources: LocalResources | None = None
        self.engine: EngineServer | None = None
        self.event_source: SqsEventSource | None = None
        # S3 Batch Operations, emulated (moto has none): bulk jobs' LambdaInvoke on the enqueue function.
        self.batch_operations: BatchOperations | None = None
        self._moto: ThreadedMotoServer | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        try:
            self._start_moto()
            self.resources = self._create_resources()
            log.info("resources created in moto at %s", self.endpoint_url)
            try:
                self.engine = EngineServer(self.engine_config, host=LOOPBACK, port=self.engine_port).start()
            except OSError as exc:
                raise StackError(f"the Bedrock engine cannot listen on {LOOPBACK}:{self.engine_port}: "
                                 f"{exc.strerror}") from None
            self.engine_url = self.engine.url
            log.info("Bedrock engine listening at %s", self.engine_url)
            if self.serve_api:
                from img2img_local.api_server import LocalApi

                try:
                    self.api = LocalApi(self.worker_environment(), port=self.api_port,
                                        timeout_seconds=self.config.api_timeout_seconds,
                                        memory_mb=self.config.api_memory_mb,
                                        function_name=f"{self.name_prefix}-api",
                                        python_version=self.config.python_version).start()
                except OSError as exc:
                    raise StackError(f"the HTTP API cannot listen on {LOOPBACK}:{self.api_port}: "
                                     f"{exc.strerror}") from None
                log.info("HTTP API listening at %s", self.api.url)
            self.batch_operations = batch_operations_for(self.worker_environment(), self.endpoint_url,
                                                         f"{self.name_prefix}-bulk-enqueue",
                                                         self.config.python_version)
            if self.attach_worker:
                self.event_source = self._event_source().start()
                log.info("worker %s attached to %s", self.handler, self.resources.job_queue_url)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the event source (and its worker processes), the engine, then moto. Idempotent."""
        if self.event_source is not None:
            self.event_source.stop()
            self.event_source = None
        if self.batch_operations is not None:
            self.batch_operations.close()
            self.batch_operations = None
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---- what clients and the worker see --------------------------------------------------------
    def client(self, service_name: str):
        """A boto3 client for this stack's moto, with the stack's fake credentials."""
        return boto3.client(service_name, endpoint_url=self.endpoint_url, region_name=REGION,
                            **FAKE_CREDENTIALS)

    def worker_environment(self) -> dict[str, str]:
        """The Lambda's environment as in the CDK stack, plus only the standard endpoint/credential variables."""
        r = self._ready_resources()
        env = self.effective_config.worker_settings(
            input_bucket=r.input_bucket, output_bucket=r.output_bucket, idempotency_table=r.idempotency_table,
            job_queue_url=r.job_queue_url, event_bus_name=r.event_bus_name, c2pa_kms_key_id=r.c2pa_key_arn,
            quota_table=r.quota_table).to_env()
        env.update(self.config.powertools_env())
        env.update({
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.engine_url,
            "AWS_ENDPOINT_URL_BEDROCK": self.engine_url,  # the control plane (lifecycle, profiles)
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": FAKE_CREDENTIALS["aws_session_token"],
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon offline
        })
        return env

    @property
    def effective_config(self) -> PipelineConfig:
        """The config as deployed here: with the chain this stack made for its signing key (c2paKey=create
        without a chain signs nothing in AWS until a certificate exists; offline the stack issues one)."""
        r = self._ready_resources()
        if not r.c2pa_key_arn or self.config.c2pa_certificate_chain:
            return self.config
        return dataclasses.replace(self.config, c2pa_certificate_chain=r.c2pa_chain_parameter)

    def client_environment(self) -> dict[str, str]:
        """What a client (the AWS CLI, boto3, the contract check) needs: the env file's contents."""
        r = self._ready_resources()
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.engine_url,
            "AWS_ENDPOINT_URL_BEDROCK": self.engine_url,  # the control plane (lifecycle, profiles)
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": REGION,
            "IMG2IMG_INPUT_BUCKET": r.input_bucket,
            "IMG2IMG_OUTPUT_BUCKET": r.output_bucket,
            "IMG2IMG_EVENTS_QUEUE_URL": r.events_queue_url,
            "IMG2IMG_JOB_QUEUE_URL": r.job_queue_url,
            "IMG2IMG_DLQ_URL": r.dlq_url,
            "IMG2IMG_EVENT_BUS_NAME": r.event_bus_name,
            "IMG2IMG_API_URL": self.api.url if self.api is not None else "",
            "IMG2IMG_IDEMPOTENCY_TABLE": r.idempotency_table,  # bulk jobs' progress items (img2img bulk status)
        }

    def write_env_file(self, path: Path) -> None:
        """Write the dotenv atomically (clients poll for it: they must never read half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={shlex.quote(value)}" for key, value in self.client_environment().items()]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write("# img2img local stack: `set -a; . ./<this file>; set +a` to use it from a shell\n")
                fh.write("\n".join(lines) + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def stats(self) -> dict:
        """The event source's accounting (invocations, durations, GB-seconds, cold starts)."""
        return self.event_source.stats() if self.event_source is not None else {}

    # ---- internals ------------------------------------------------------------------------------
    def _ready_resources(self) -> LocalResources:
        if self.resources is None:
            raise StackError("the local stack is not started")
        return self.resources

    def _start_moto(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        if self.port:
            _ensure_port_free(self.port, "moto")
        self._moto = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        # moto's backends are process-global: start from an empty account every time.
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"),
                               timeout=10).close()

    def _create_resources(self) -> LocalResources:
        prefix = self.name_prefix
        s3, sqs = self.client("s3"), self.client("sqs")
        dynamodb, events = self.client("dynamodb"), self.client("events")

        input_bucket, output_bucket = f"{prefix}-input", f"{prefix}-output"
        for bucket in (input_bucket, output_bucket):  # infra/storage.py: versioned, private, SSE-S3
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True})
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})

        for bucket, extra in ((input_bucket, []), (output_bucket, [{  # infra/storage.py's lifecycle rules
                "ID": "expire-staged-model-answers", "Status": "Enabled",
                "Filter": {"Prefix": f"{self.config.output_prefix}{STAGING_DIR}"},
                "Expiration": {"Days": STAGING_EXPIRATION_DAYS},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}])):
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
                "ID": "expire-noncurrent-and-abort-multipart", "Status": "Enabled", "Filter": {"Prefix": ""},
                "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_VERSION_EXPIRATION_DAYS},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_INCOMPLETE_MULTIPART_DAYS},
            }, *extra]})

        dlq_url = sqs.create_queue(QueueName=f"{prefix}-jobs-dlq", Attributes={
            "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})["QueueUrl"]
        dlq_arn = _queue_arn(sqs, dlq_url)
        job_queue_url = sqs.create_queue(QueueName=f"{prefix}-jobs", Attributes={
            # Local-only: the CDK stack uses config.queue_visibility_timeout_seconds (6x the timeout).
            "VisibilityTimeout": str(self.visibility_timeout_seconds),
            "MessageRetentionPeriod": str(JOB_RETENTION_SECONDS),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": self.config.max_receive_count}),
        })["QueueUrl"]
        job_queue_arn = _queue_arn(sqs, job_queue_url)
        s3.put_bucket_notification_configuration(Bucket=input_bucket, NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": f"jobs-on-{suffix.lstrip('.')}", "QueueArn": job_queue_arn,
                 "Events": ["s3:ObjectCreated:*"],
                 "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": suffix}]}}}
                for suffix in notification_suffixes()]})

        table = f"{prefix}-idempotency"
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"}])
        dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": TTL_ATTRIBUTE})

        # The bus, and (local only) a rule copying every event on it to a queue users can read.
        bus = f"{prefix}-bus"
        bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
        events_queue_url = sqs.create_queue(QueueName=f"{prefix}-events")["QueueUrl"]
        events_queue_arn = _queue_arn(sqs, events_queue_url)
        rule = f"{prefix}-all-events"
        rule_arn = events.put_rule(Name=rule, EventBusName=bus,
                                   EventPattern=json.dumps({"source": [{"prefix": ""}]}))["RuleArn"]
        sqs.set_queue_attributes(QueueUrl=events_queue_url, Attributes={"Policy": json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                           "Action": "sqs:SendMessage", "Resource": events_queue_arn,
                           "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
        events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "events-queue", "Arn": events_queue_arn}])
        # infra/event_rules.py: ImageGenerationRequested events on the bus become jobs.
        requested_rule = f"{prefix}-requested-to-jobs"
        events.put_rule(Name=requested_rule, EventBusName=bus,
                        EventPattern=json.dumps({"detail-type": [REQUESTED_EVENT]}))
        events.put_targets(Rule=requested_rule, EventBusName=bus, Targets=[{"Id": "job-queue", "Arn": job_queue_arn}])
        log.debug("event bus %s routes to %s", bus_arn, events_queue_url)
        key_arn, chain_parameter = self._c2pa_signing_key(prefix) if self.config.c2pa_key != "none" else ("", "")
        quota_table = self._quota_table(prefix) if self.config.model_quotas else ""

        return LocalResources(
            input_bucket=input_bucket, output_bucket=output_bucket, job_queue_url=job_queue_url,
            job_queue_arn=job_queue_arn, dlq_url=dlq_url, dlq_arn=dlq_arn, events_queue_url=events_queue_url,
            idempotency_table=table, event_bus_name=bus, events_rule_name=rule, function_name=f"{prefix}-worker",
            requested_rule_name=requested_rule, c2pa_key_arn=key_arn, c2pa_chain_parameter=chain_parameter,
            quota_table=quota_table)

    def _quota_table(self, prefix: str) -> str:
        """The per-model quota table, as infra/state.py's QuotaTable (created when modelQuotas is set)."""
        dynamodb, name = self.client("dynamodb"), f"{prefix}-quota"
        dynamodb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"}])
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": TTL_ATTRIBUTE})
        return name

    def _c2pa_signing_key(self, prefix: str) -> tuple[str, str]:
        """The KMS key that signs C2PA manifests and the SSM parameter holding its chain."""
        kms, ssm = self.client("kms"), self.client("ssm")
        key_arn = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY",
                                 Description="bedrock-img2img local C2PA signer (NOT TRUSTED)")["KeyMetadata"]["Arn"]
        parameter = f"/{prefix}/c2pa-certificate-chain"
        ssm.put_parameter(Name=parameter, Value=certify_kms_key(kms, key_arn), Type="String", Tier="Advanced")
        return key_arn, parameter

    def _event_source(self) -> SqsEventSource:
        resources = self._ready_resources()
        function = FunctionSpec(
            handler=self.handler, environment=self.worker_environment(), function_name=resources.function_name,
            memory_mb=self.config.worker_memory_mb, timeout_seconds=self.config.worker_timeout_seconds,
            region=REGION, python_version=self.config.python_version)
        return SqsEventSource(
            function, resources.job_queue_url, endpoint_url=self.endpoint_url,
            batch_size=self.config.batch_size, batching_window_seconds=self.config.batch_window_seconds,
            maximum_concurrency=self.config.event_source_max_concurrency, report_batch_item_failures=True)


def batch_operations_for(environment: dict[str, str], endpoint_url: str, function_name: str,
                         python_version: str) -> BatchOperations:
    """The emulated S3 Batch Operations, invoking the enqueue function with this environment."""
    function = FunctionSpec(handler=BULK_ENQUEUE_HANDLER, environment=environment, function_name=function_name,
                            memory_mb=256, timeout_seconds=30, region=REGION, python_version=python_version)
    return BatchOperations(function, endpoint_url=endpoint_url)


def _queue_arn(sqs, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _ensure_port_free(port: int, what: str) -> None:
    """moto's server thread would die silently on a busy port (and start() would wait forever): check first."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError as exc:
            raise StackError(f"{what} cannot listen on {LOOPBACK}:{port}: {exc.strerror}") from None
