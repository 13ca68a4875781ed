"""Lambda's SQS event source mapping, emulated against any SQS endpoint (moto locally).

It does what the Lambda service does for `AWS::Lambda::EventSourceMapping` on a standard queue with
`FunctionResponseTypes: [ReportBatchItemFailures]`:
- long-polls ReceiveMessage (all system and message attributes) and gathers a batch until it holds
  `batch_size` messages or `batching_window_seconds` have passed since the first one arrived;
- builds the exact event Lambda sends (`Records[]` with messageId, receiptHandle, body, attributes,
  messageAttributes in Lambda's camelCase shape, md5OfBody, eventSource, eventSourceARN, awsRegion);
- invokes the real handler in a warm, isolated worker process (see lambda_runtime), at most
  `maximum_concurrency` invocations in flight;
- deletes the messages that succeeded. Failed ones are left alone: they reappear once the queue's
  visibility timeout expires, with ApproximateReceiveCount one higher, and SQS's redrive policy moves
  them to the DLQ after maxReceiveCount receives (moto does this on receive, as SQS does).
Every invocation is recorded (duration, billed duration, memory, GB-seconds, cold starts) for stats().
"""
from __future__ import annotations

import base64
import logging
import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.config import Config

from img2img_local.lambda_runtime import ExecutionEnvironment, FunctionSpec, InvokeResult

log = logging.getLogger(__name__)

RECEIVE_LIMIT = 10  # SQS returns at most 10 messages per ReceiveMessage
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                    "aws_session_token": "testing"}


@dataclass(frozen=True)
class Invocation:
    """One invocation's accounting, as Lambda's REPORT line and bill would show it."""

    request_id: str
    instance_id: int
    started_at: float  # epoch seconds
    outcome: str  # "success" | "error" | "timeout"
    records: int
    failed_records: int
    duration_ms: float
    billed_duration_ms: int
    memory_size_mb: int
    max_memory_used_mb: int
    gb_seconds: float
    cold_start: bool
    init_duration_ms: float | None
    error_type: str | None


def billed_duration_ms(duration_ms: float, init_duration_ms: float | None) -> int:
    """Lambda bills in 1 ms steps, rounded up; since August 2025 the INIT phase is billed too."""
    return math.ceil(duration_ms + (init_duration_ms or 0.0))


def lambda_sqs_record(message: dict, queue_arn: str, region: str) -> dict:
    """One `Records[]` entry exactly as Lambda builds it from a ReceiveMessage result."""
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {name: _lambda_message_attribute(value)
                              for name, value in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message["MD5OfBody"],
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
    return record


def _lambda_message_attribute(value: dict) -> dict:
    """SQS's {StringValue|BinaryValue, DataType} in Lambda's camelCase form (binary as base64)."""
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        raw = value["BinaryValue"]
        out["binaryValue"] = base64.b64encode(raw if isinstance(raw, bytes) else raw.encode()).decode()
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])]
    out["dataType"] = value["DataType"]
    return out


def failed_message_ids(response: Any, message_ids: list[str]) -> list[str]:
    """Apply Lambda's rules for a partial batch response; return the ids that go back to the queue.

    Complete success: a null/empty response or a null/empty `batchItemFailures`. Complete failure:
    anything else that is not a list of `{"itemIdentifier": <a message id of this batch>}`.
    """
    if response is None or response == {}:
        return []
    if not isinstance(response, dict):
        return list(message_ids)
    failures = response.get("batchItemFailures")
    if failures is None or failures == []:
        return []
    if not isinstance(failures, list):
        return list(message_ids)
    known = set(message_ids)
    failed = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in known:
            return list(message_ids)
        failed.add(identifier)
    return [mid for mid in message_ids if mid in failed]


class SqsEventSource:
    """Pollers that feed one SQS queue to one Lambda function, as an event source mapping does."""

    def __init__(self, function: FunctionSpec, queue_url: str, *, endpoint_url: str,
                 batch_size: int = 10, batching_window_seconds: float = 0.0, maximum_concurrency: int = 2,
                 report_batch_item_failures: bool = True, poll_wait_seconds: int = 1) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be 1..10000")
        if batch_size > RECEIVE_LIMIT and batching_window_seconds <= 0:
            raise ValueError("a batch_size above 10 needs a batching window (as in Lambda)")
        if maximum_concurrency < 1:
            raise ValueError("maximum_concurrency must be at least 1")
        self.function = function
        self.queue_url = queue_url
        self.endpoint_url = endpoint_url
        self.batch_size = batch_size
        self.batching_window_seconds = batching_window_seconds
        self.maximum_concurrency = maximum_concurrency
        self.report_batch_item_failures = report_batch_item_failures
        # Short long-polls (Lambda uses 20 s) so stop() is prompt.
        self.poll_wait_seconds = poll_wait_seconds
        self.queue_arn = ""
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._invocations: list[Invocation] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._environments: list[ExecutionEnvironment] = []
        self._threads: list[threading.Thread] = []

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> SqsEventSource:
        sqs = self._client()
        self.queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._stopping.clear()
        # One poller per concurrency slot, each with its own sandbox: never more invocations in flight
        # than maximum_concurrency, and never more sandboxes than that either.
        for slot in range(self.maximum_concurrency):
            environment = ExecutionEnvironment(self.function, instance_id=slot)
            thread = threading.Thread(target=self._poll, args=(self._client(), environment),
                                      name=f"sqs-poller-{slot}", daemon=True)
            self._environments.append(environment)
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop polling, let invocations in flight finish for up to grace_seconds, then end the sandboxes.

        Messages of an invocation cut short are not deleted: they come back after the visibility timeout.
        """
        self._stopping.set()
        deadline = time.monotonic() + grace_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for environment in self._environments:
            environment.kill()
        for thread in self._threads:
            thread.join()
        for environment in self._environments:
            environment.close()
        self._threads.clear()
        self._environments.clear()

    def __enter__(self) -> SqsEventSource:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def worker_pids(self) -> list[int]:
        return [env.pid for env in self._environments if env.warm and env.pid is not None]

    # ---- accounting -----------------------------------------------------------------------------
    def stats(self) -> dict:
        """Totals and the per-invocation list (benchmarks derive GB-seconds per image from it)."""
        with self._lock:
            invocations = list(self._invocations)
            max_in_flight, in_flight = self._max_in_flight, self._in_flight
        return {
            "function_name": self.function.function_name,
            "memory_size_mb": self.function.memory_mb,
            "invocations": len(invocations),
            "records": sum(i.records for i in invocations),
            "failed_records": sum(i.failed_records for i in invocations),
            "errors": sum(i.outcome == "error" for i in invocations),
            "timeouts": sum(i.outcome == "timeout" for i in invocations),
            "cold_starts": sum(i.cold_start for i in invocations),
            "init_duration_ms": sum(i.init_duration_ms or 0.0 for i in invocations),
            "duration_ms": sum(i.duration_ms for i in invocations),
            "billed_duration_ms": sum(i.billed_duration_ms for i in invocations),
            "gb_seconds": sum(i.gb_seconds for i in invocations),
            "max_in_flight": max_in_flight,
            "in_flight": in_flight,
            "list": [asdict(i) for i in invocations],
        }

    # ---- polling --------------------------------------------------------------------------------
    def _client(self):
        return boto3.client("sqs", endpoint_url=self.endpoint_url, region_name=self.function.region,
                            config=Config(retries={"max_attempts": 2, "mode": "standard"},
                                          read_timeout=self.poll_wait_seconds + 10),
                            **FAKE_CREDENTIALS)

    def _poll(self, sqs, environment: ExecutionEnvironment) -> None:
        while not self._stopping.is_set():
            try:
                batch = self._gather(sqs)
                if batch:
                    self._invoke(sqs, environment, batch)
            except Exception:  # the service keeps polling whatever happens; say why and back off
                if self._stopping.is_set():
                    return
                log.exception("event source: polling %s failed", self.queue_url)
                self._stopping.wait(1.0)

    def _receive(self, sqs, max_messages: int, wait_seconds: int) -> list[dict]:
        return sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages,
                                   WaitTimeSeconds=wait_seconds, AttributeNames=["All"],
                                   MessageAttributeNames=["All"]).get("Messages", [])

    def _gather(self, sqs) -> list[dict]:
        """Receive until the batch is full or the batching window (from the first message) is over."""
        messages = self._receive(sqs, min(RECEIVE_LIMIT, self.batch_size), self.poll_wait_seconds)
        if not messages:
            return []
        window_ends = time.monotonic() + self.batching_window_seconds
        while len(messages) < self.batch_size and not self._stopping.is_set():
            remaining = window_ends - time.monotonic()
            if remaining <= 0:
                break
            wait_seconds = min(20, int(remaining))  # SQS waits in whole seconds
            more = self._receive(sqs, min(RECEIVE_LIMIT, self.batch_size - len(messages)), wait_seconds)
            messages.extend(more)
            if not more and wait_seconds == 0:
                self._stopping.wait(min(remaining, 0.05))
        return messages

    def _invoke(self, sqs, environment: ExecutionEnvironment, messages: list[dict]) -> None:
        event = {"Records": [lambda_sqs_record(m, self.queue_arn, self.function.region) for m in messages]}
        message_ids = [m["MessageId"] for m in messages]
        started_at = time.time()
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            result = environment.invoke(event, request_id=str(uuid.uuid4()))
        finally:
            with self._lock:
                self._in_flight -= 1
        if result.outcome != "success":
            failed = list(message_ids)
        elif self.report_batch_item_failures:
            failed = failed_message_ids(result.response, message_ids)
        else:
            failed = []
        self._record(environment.instance_id, started_at, result, len(messages), len(failed))
        returned = set(failed)
        self._delete(sqs, [m for m in messages if m["MessageId"] not in returned])

    def _delete(self, sqs, messages: list[dict]) -> None:
        for start in range(0, len(messages), RECEIVE_LIMIT):
            chunk = messages[start:start + RECEIVE_LIMIT]
            response = sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)])
            for failure in response.get("Failed", []):
                log.warning("event source: could not delete message %s: %s",
                            chunk[int(failure["Id"])]["MessageId"], failure.get("Message"))

    def _record(self, instance_id: int, started_at: float, result: InvokeResult, records: int,
                failed: int) -> None:
        billed = billed_duration_ms(result.duration_ms, result.init_duration_ms)
        invocation = Invocation(
            request_id=result.request_id, instance_id=instance_id, started_at=started_at,
            outcome=result.outcome, records=records, failed_records=failed,
            duration_ms=round(result.duration_ms, 2), billed_duration_ms=billed,
            memory_size_mb=self.function.memory_mb, max_memory_used_mb=result.max_memory_used_mb,
            gb_seconds=billed / 1000 * self.function.memory_mb / 1024,
            cold_start=result.cold_start, init_duration_ms=result.init_duration_ms,
            error_type=(result.error or {}).get("errorType"))
        with self._lock:
            self._invocations.append(invocation)
        init = f" Init Duration: {result.init_duration_ms:.2f} ms" if result.init_duration_ms is not None else ""
        log.info("REPORT RequestId: %s Duration: %.2f ms Billed Duration: %d ms Memory Size: %d MB "
                 "Max Memory Used: %d MB%s | records: %d, failed: %d%s", result.request_id,
                 result.duration_ms, billed, self.function.memory_mb, result.max_memory_used_mb, init,
                 records, failed, f" | {result.error['errorType']}: {result.error['errorMessage']}"
                 if result.error else "")
