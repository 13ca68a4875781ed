"""The Lambda SQS event source emulation, driven against moto in server mode with a tiny test handler."""
import hashlib
import json
import logging
import os
import time
import uuid

import boto3
import pytest
from moto.server import ThreadedMotoServer

from img2img_local.event_source import SqsEventSource, failed_message_ids
from img2img_local.lambda_runtime import FunctionSpec

pytestmark = pytest.mark.e2e

HANDLER = "esm_test_handler.handler"  # tests/e2e is on sys.path (pytest's rootdir-relative import)


@pytest.fixture(scope="module")
def moto_url():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def sqs(moto_url):
    return boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def queues(sqs):
    """A fresh job queue with a DLQ. As on AWS, the visibility timeout must exceed the batching window
    plus the invocation, or messages come back while still being handled."""
    def make(max_receive_count=10, visibility_timeout=1):
        name = f"q-{uuid.uuid4().hex[:8]}"
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}),
        })["QueueUrl"]
        return queue, dlq
    return make


@pytest.fixture
def run_source(moto_url, tmp_path):
    """Start an event source on a queue with the test handler; stopped (workers ended) after the test."""
    started = []

    def start(queue_url, **kwargs):
        timeout = kwargs.pop("timeout_seconds", 10)
        function = FunctionSpec(HANDLER, {"ESM_TEST_DIR": str(tmp_path), "ESM_TEST_MARKER": "from-spec"},
                                function_name="esm-test", memory_mb=512, timeout_seconds=timeout)
        source = SqsEventSource(function, queue_url, endpoint_url=moto_url, **kwargs)
        started.append(source)
        return source.start()

    yield start
    for source in started:
        source.stop()


def invocations(tmp_path):
    path = tmp_path / "invocations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def seen(tmp_path, body):
    """(ApproximateReceiveCount, request id) of each time the handler saw a message with this body."""
    return [(int(r["attributes"]["ApproximateReceiveCount"]), inv["request_id"])
            for inv in invocations(tmp_path) for r in inv["records"] if r["body"] == body]


def wait_for(predicate, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def queue_depth(sqs, queue_url):
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_event_record_has_lambdas_exact_shape_and_context(sqs, queues, run_source, tmp_path):
    queue, _ = queues()
    sqs.send_message(QueueUrl=queue, MessageBody="hello", MessageAttributes={
        "kind": {"DataType": "String", "StringValue": "job"}, "n": {"DataType": "Number", "StringValue": "3"}})
    run_source(queue, batch_size=1)
    (inv,) = wait_for(lambda: invocations(tmp_path))
    (record,) = inv["records"]
    assert list(record) == ["messageId", "receiptHandle", "body", "attributes", "messageAttributes",
                            "md5OfBody", "md5OfMessageAttributes", "eventSource", "eventSourceARN", "awsRegion"]
    assert record["body"] == "hello"
    assert record["md5OfBody"] == hashlib.md5(b"hello").hexdigest()
    assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
            "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "job", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "n": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number"}}
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == f"arn:aws:sqs:us-east-1:123456789012:{queue.rsplit('/', 1)[1]}"
    assert record["awsRegion"] == "us-east-1"
    # The fake context and the function's own environment reach the handler.
    assert inv["function_name"] == "esm-test" and inv["memory_limit_in_mb"] == "512"
    assert 9000 < inv["remaining_ms"] <= 10000
    assert inv["env_marker"] == "from-spec"
    wait_for(lambda: queue_depth(sqs, queue) == 0)  # succeeded: deleted


def test_partial_batch_returns_only_failed_records_which_come_back_after_the_visibility_timeout(
        sqs, queues, run_source, tmp_path):
    queue, dlq = queues(max_receive_count=10, visibility_timeout=2)
    for body in ("ok-1", "fail", "ok-2"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    source = run_source(queue, batch_size=10, batching_window_seconds=0.3)
    wait_for(lambda: len(seen(tmp_path, "fail")) >= 3)
    first = invocations(tmp_path)[0]
    assert sorted(r["body"] for r in first["records"]) == ["fail", "ok-1", "ok-2"]
    counts = [count for count, _ in seen(tmp_path, "fail")]
    assert counts[:3] == [1, 2, 3]  # redelivered, ApproximateReceiveCount growing
    assert seen(tmp_path, "ok-1") == [(1, first["request_id"])]  # deleted after the first success
    assert seen(tmp_path, "ok-2") == [(1, first["request_id"])]
    # Failed records are not deleted but left to reappear: redelivery waits for the 2 s visibility timeout.
    started = [inv["started_at"] for inv in source.stats()["list"][:3]]
    assert all(later - earlier >= 1.5 for earlier, later in zip(started, started[1:]))  # noqa: RUF007
    assert queue_depth(sqs, dlq) == 0


def test_message_goes_to_the_dlq_after_max_receive_count(sqs, queues, run_source, tmp_path):
    queue, dlq = queues(max_receive_count=2)
    sqs.send_message(QueueUrl=queue, MessageBody="fail")
    run_source(queue, batch_size=1)
    moved = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"]).get("Messages"))
    assert moved[0]["Body"] == "fail"
    assert [count for count, _ in seen(tmp_path, "fail")] == [1, 2]  # never handed to the function a 3rd time
    assert queue_depth(sqs, queue) == 0


def test_handler_exception_returns_the_whole_batch(sqs, queues, run_source, tmp_path):
    queue, _ = queues(max_receive_count=10, visibility_timeout=2)
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "1", "MessageBody": "ok"},
                                                    {"Id": "2", "MessageBody": "raise"}])
    source = run_source(queue, batch_size=10, batching_window_seconds=0.3)
    wait_for(lambda: len(seen(tmp_path, "ok")) >= 2)
    assert [count for count, _ in seen(tmp_path, "ok")][:2] == [1, 2]  # the good one came back too
    errors = [i for i in source.stats()["list"] if i["outcome"] == "error"]
    assert errors and errors[0]["error_type"] == "RuntimeError" and errors[0]["failed_records"] == 2


def test_timeout_returns_the_whole_batch_and_discards_the_sandbox(sqs, queues, run_source, tmp_path):
    queue, _ = queues(max_receive_count=10, visibility_timeout=2)
    sqs.send_message(QueueUrl=queue, MessageBody="sleep:3")
    sqs.send_message(QueueUrl=queue, MessageBody="after")
    source = run_source(queue, batch_size=1, maximum_concurrency=1, timeout_seconds=1)
    wait_for(lambda: sum(i["outcome"] == "timeout" for i in source.stats()["list"]) >= 1, timeout=20)
    wait_for(lambda: any(i["outcome"] == "success" for i in source.stats()["list"]), timeout=20)
    listed = source.stats()["list"]
    timed_out = next(i for i in listed if i["outcome"] == "timeout")
    assert timed_out["error_type"] == "Sandbox.Timedout" and timed_out["duration_ms"] == 1000
    after = listed[listed.index(timed_out) + 1]
    assert after["cold_start"]  # a timed-out sandbox is not reused


def test_batching_window_gathers_late_messages_and_batch_size_caps_a_batch(sqs, queues, run_source, tmp_path):
    queue, _ = queues(visibility_timeout=10)
    source = run_source(queue, batch_size=3, batching_window_seconds=2, maximum_concurrency=1)
    sqs.send_message(QueueUrl=queue, MessageBody="early")
    first_sent = time.time()
    time.sleep(0.6)
    sqs.send_message(QueueUrl=queue, MessageBody="late")
    (window_batch,) = wait_for(lambda: invocations(tmp_path))
    assert sorted(r["body"] for r in window_batch["records"]) == ["early", "late"]
    assert source.stats()["list"][0]["started_at"] - first_sent >= 1.5  # waited for the window to close

    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(n), "MessageBody": f"m{n}"} for n in range(7)])
    wait_for(lambda: sum(len(i["records"]) for i in invocations(tmp_path)) == 9)
    sizes = [len(i["records"]) for i in invocations(tmp_path)[1:]]
    assert max(sizes) == 3 and sum(sizes) == 7


def test_maximum_concurrency_is_never_exceeded_and_sandboxes_are_reused(sqs, queues, run_source, tmp_path):
    queue, _ = queues(visibility_timeout=10)
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(n), "MessageBody": "sleep:0.4"}
                                                    for n in range(8)])
    source = run_source(queue, batch_size=1, maximum_concurrency=2)
    # The source accounts an invocation just after its handler returns: wait for both to have all 8.
    wait_for(lambda: len(invocations(tmp_path)) == 8 and source.stats()["invocations"] == 8)
    seen_by_handler = invocations(tmp_path)
    assert max(i["in_flight"] for i in seen_by_handler) == 2  # reached, never exceeded
    stats = source.stats()
    assert stats["max_in_flight"] == 2
    pids = {i["pid"] for i in seen_by_handler}
    assert len(pids) == 2 and os.getpid() not in pids  # one isolated process per concurrent instance
    assert len({i["process_token"] for i in seen_by_handler}) == 2
    assert max(i["invocation_in_process"] for i in seen_by_handler) >= 3  # warm and reused

    # Accounting: one cold start per sandbox, billed duration rounded up to 1 ms including INIT.
    assert stats["invocations"] == 8 and stats["records"] == 8 and stats["failed_records"] == 0
    assert stats["cold_starts"] == 2
    for inv in stats["list"]:
        assert inv["duration_ms"] >= 400 and inv["memory_size_mb"] == 512 and inv["max_memory_used_mb"] > 0
        exact = inv["duration_ms"] + (inv["init_duration_ms"] or 0)  # duration_ms is rounded to 0.01 ms
        assert exact - 0.01 <= inv["billed_duration_ms"] < exact + 1.01 and isinstance(inv["billed_duration_ms"], int)
        assert inv["gb_seconds"] == pytest.approx(inv["billed_duration_ms"] / 1000 * 0.5)
        assert (inv["init_duration_ms"] is not None) == inv["cold_start"]
    assert stats["gb_seconds"] == pytest.approx(sum(i["gb_seconds"] for i in stats["list"]))
    assert 8 * 0.4 * 0.5 <= stats["gb_seconds"] < 8 * 2.0 * 0.5

    pids_before_stop = source.worker_pids
    source.stop()
    for pid in pids_before_stop:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize("response, failed", [
    (None, []),
    ({}, []),
    ({"batchItemFailures": None}, []),
    ({"batchItemFailures": []}, []),
    ({"batchItemFailures": [{"itemIdentifier": "b"}]}, ["b"]),
    ({"batchItemFailures": [{"itemIdentifier": "c"}, {"itemIdentifier": "a"}]}, ["a", "c"]),
    ({"batchItemFailures": [{"itemIdentifier": ""}]}, ["a", "b", "c"]),
    ({"batchItemFailures": [{"itemIdentifier": None}]}, ["a", "b", "c"]),
    ({"batchItemFailures": [{"id": "a"}]}, ["a", "b", "c"]),
    ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, ["a", "b", "c"]),
    ("not an object", ["a", "b", "c"]),
])
def test_partial_batch_response_rules(response, failed):
    assert failed_message_ids(response, ["a", "b", "c"]) == failed
