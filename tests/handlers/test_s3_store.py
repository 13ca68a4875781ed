"""S3Store.put: large outputs (upscales) go up in one PutObject without a copy, errors keep their classes."""
from __future__ import annotations

import os
import tracemalloc

import boto3
import pytest
from aws_world import OUTPUT
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from img2img.aws.s3 import S3Store
from img2img.core.errors import JobError

BIG = 32 * 1024 * 1024  # an upscale's PNG


def test_a_large_output_round_trips_with_its_type_and_metadata(world):
    data = os.urandom(BIG)
    S3Store(world.s3).put(OUTPUT, "up/x4.png", data, "image/png", {"seed": "7"})
    got = world.s3.get_object(Bucket=OUTPUT, Key="up/x4.png")
    assert got["ContentType"] == "image/png" and got["Metadata"] == {"seed": "7"}
    assert got["ContentLength"] == BIG and got["Body"].read() == data


def test_the_upload_holds_no_second_copy_of_the_image(settings_env):
    """Everything a real upload does but the socket: the request is answered at before-send."""
    s3 = boto3.client("s3", region_name="us-east-1")

    class Empty:
        def stream(self):
            return iter([b""])

    s3.meta.events.register("before-send.s3.PutObject",
                            lambda request, **kw: AWSResponse(request.url, 200, {"ETag": '"e"'}, Empty()))
    data = os.urandom(BIG)
    tracemalloc.start()
    try:
        S3Store(s3).put("any-bucket", "up/x4.png", data, "image/png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < BIG // 4, f"the upload allocated {peak:,} bytes for a {BIG:,}-byte image"


@pytest.mark.parametrize("code,status,expected,retryable", [
    ("AccessDenied", 403, "access_denied", False),
    ("KMS.AccessDeniedException", 400, "access_denied", False),
    ("SlowDown", 503, "storage_error", True),
    ("InternalError", 500, "storage_error", True),
    ("EntityTooLarge", 400, "internal_error", False),
])
def test_put_errors_keep_their_classification(settings_env, code, status, expected, retryable):
    s3 = boto3.client("s3", region_name="us-east-1")
    with Stubber(s3) as stub:
        stub.add_client_error("put_object", service_error_code=code, http_status_code=status)
        with pytest.raises(JobError) as caught:
            S3Store(s3).put(OUTPUT, "k.png", b"x", "image/png")
    assert caught.value.code == expected and caught.value.retryable is retryable


def test_a_network_fault_on_put_is_transient(settings_env):
    s3 = boto3.client("s3", region_name="us-east-1")

    def unreachable(**kw):
        raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")

    s3.meta.events.register("before-send.s3.PutObject", unreachable)
    with pytest.raises(JobError) as caught:
        S3Store(s3).put(OUTPUT, "k.png", b"x", "image/png")
    assert caught.value.code == "storage_error" and caught.value.retryable
