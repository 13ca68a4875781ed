"""Shared helpers of the handler tests: moto for S3/SQS/DynamoDB/EventBridge, Stubber for Bedrock.

Each test gets fresh AWS state, fresh settings and a freshly assembled pipeline whose Bedrock
client is stubbed, so every request body the worker sends is checked against the real service model.
"""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from botocore.response import StreamingBody
from botocore.stub import Stubber
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
INPUT, OUTPUT, TABLE = "img2img-test-input", "img2img-test-output", "img2img-test-idempotency"
SDXL = "stability.stable-diffusion-xl-v1"
SD35 = "stability.sd3-5-large-v1:0"


def png_bytes(size=(64, 64), color=(200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def bedrock_body(payload: dict) -> dict:
    raw = json.dumps(payload).encode()
    return {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"}


def sd35_ok(seed: int = 42, image: bytes | None = None) -> dict:
    return bedrock_body({"seeds": [seed], "finish_reasons": [None],
                         "images": [base64.b64encode(image or png_bytes()).decode()]})


def sdxl_ok(seed: int = 42, image: bytes | None = None) -> dict:
    return bedrock_body({"result": "success", "artifacts": [
        {"seed": seed, "base64": base64.b64encode(image or png_bytes()).decode(), "finishReason": "SUCCESS"}]})


def model_calls(world) -> list[dict]:
    """The InvokeModel calls the worker makes from now on, as {modelId, body (decoded)}."""
    calls: list[dict] = []
    world.pipeline.model._runtime.meta.events.register(
        "before-parameter-build.bedrock-runtime.InvokeModel",
        lambda params, **kw: calls.append({"modelId": params["modelId"], "body": json.loads(params["body"])}))
    return calls


class RefusingQuota:
    """A QuotaLimiter (core.ports) that refuses the first `refusals` tickets with `wait` seconds; `asked`
    holds the model id of every ticket asked for."""

    def __init__(self, refusals: int, wait: int):
        self.refusals, self.wait, self.asked = refusals, wait, []

    def acquire(self, model_id: str, *, reservation=None):
        from img2img.core.quota import Admission

        self.asked.append(model_id)
        if self.refusals:
            self.refusals -= 1
            return Admission(self.wait)
        return Admission(0)

    def throttled(self, model_id: str) -> None:
        pass


class Context:
    function_name = "img2img-worker"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:img2img-worker"
    memory_limit_in_mb = 1024
    aws_request_id = "req-1"
    log_group_name = "/aws/lambda/img2img-worker"
    log_stream_name = "stream"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def s3_body(key: str, bucket: str = INPUT, **obj) -> str:
    """An S3 notification as S3 writes it into SQS: the key form-URL-encoded."""
    return json.dumps({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key, safe="/"), "size": obj.get("size", 1), **obj}}}]})


def sqs_event(*bodies: str, receive_count: int = 1) -> dict:
    return {"Records": [{
        "messageId": f"m{i}", "receiptHandle": f"rh{i}", "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1700000000000",
                       "SenderId": "s3", "ApproximateFirstReceiveTimestamp": "1700000000000"},
        "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:img2img-jobs", "awsRegion": "us-east-1",
    } for i, body in enumerate(bodies)]}


@dataclass
class World:
    s3: object
    sqs: object
    queue_url: str
    stub: Stubber
    pipeline: object

    def put(self, key: str, body: bytes | str | dict, metadata: dict | None = None) -> dict:
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        return self.s3.put_object(Bucket=INPUT, Key=key, Body=body, Metadata=metadata or {})

    def sample(self, name: str) -> bytes:
        return (SAMPLES / name).read_bytes()

    def record(self, key: str) -> dict:
        return json.loads(self.s3.get_object(Bucket=OUTPUT, Key=f"{key}.json")["Body"].read())

    def output_keys(self) -> list[str]:
        return sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=OUTPUT).get("Contents", []))

    def run(self, *bodies: str, receive_count: int = 1) -> dict:
        from img2img.handlers import sqs_worker

        return sqs_worker.handler(sqs_event(*bodies, receive_count=receive_count), Context())

    def deferred(self) -> list[dict]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                            AttributeNames=["All"]).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


