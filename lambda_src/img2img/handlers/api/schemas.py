"""The API's request and response models (the OpenAPI document is generated from these)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import BaseModel, ConfigDict, Field

from ...core.errors import CODES
from ...operations import NAMES

JOB_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$"
FILENAME = (r"^[^/\\\x00-\x1f]{1,200}\."
            r"(jpg|jpeg|png|webp|gif|bmp|tif|tiff|heic|heif|JPG|JPEG|PNG|WEBP|GIF|BMP|TIF|TIFF|HEIC|HEIF)$")


class GenerationRequest(BaseModel):
    """One of `image` (base64) or `source` (an object in the input bucket), plus parameters, the
    operation and its companion images (`mask`, `style_image`).

    The same body is accepted by POST /v1/jobs. A raw image body (`Content-Type: image/*`) takes its
    parameters from the query string instead (`?prompt=...&seed=7`, or `?params=<JSON>`)."""

    model_config = ConfigDict(extra="forbid")
    image: str | None = Field(None, description="the input image, base64 (no data: prefix)")
    source: str | None = Field(None, pattern=S3_URI, description="s3://<input bucket>/<key> of an uploaded image")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="job parameters, as in a sidecar (docs/parameters.md)")
    operation: str | None = Field(None, max_length=64, examples=["remove-background"], description=(
        "what to do (docs/operations.md): " + ", ".join(NAMES) + "; default image-to-image. "
        "params.operation works too"))
    mask: str | None = Field(None, description=(
        "inpaint / erase: the mask (white = edit, black = keep), base64 (no data: prefix) or an "
        "input-bucket key (from the bucket root) or s3://<input bucket>/<key>; `alpha`: the image's alpha "
        "channel. Default: a mask stored beside the image, else the image's alpha channel"))
    style_image: str | None = Field(None, description=(
        "style-transfer: the style image, base64 (no data: prefix) or an input-bucket key (from the bucket "
        "root) or s3://<input bucket>/<key>"))


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(pattern=FILENAME, description="the image's file name (an image suffix)")
    content_type: str = Field("application/octet-stream", pattern=r"^[\w.+-]+/[\w.+-]+$",
                              description="the Content-Type header the upload will send")
    params: dict[str, Any] = Field(default_factory=dict, description="job parameters (validated now)")


class Location(BaseModel):
    bucket: str
    key: str


class OutputLink(BaseModel):
    bucket: str
    key: str
    content_type: str | None = None
    bytes: int | None = None
    url: str = Field(description="presigned GET URL")


class InlineImage(BaseModel):
    content_type: str
    base64: str


class GenerationResult(BaseModel):
    job_id: str
    status: Literal["succeeded"]
    image: InlineImage | None = Field(None, description="absent on 303: follow `url`")
    url: str | None = Field(None, description="presigned GET URL of the output image")
    record: dict[str, Any] = Field(description="the outcome record (docs/records.md)")


class JobAccepted(BaseModel):
    job_id: str
    status: Literal["queued"]
    status_url: str
    reason: str | None = None


class JobStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    source: dict[str, Any] | None = None
    record: dict[str, Any] | None = Field(None, description="the outcome record, once there is one")
    outputs: list[OutputLink] = Field(default_factory=list)
    error: dict[str, Any] | None = None


class UploadTicket(BaseModel):
    job_id: str
    method: Literal["PUT"]
    url: str
    headers: dict[str, str] = Field(description="send exactly these headers with the PUT")
    bucket: str
    key: str
    expires_in: int
    record: Location = Field(description="where the outcome record will appear")
    status_url: str


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(description="a stable error code (docs/errors.md, docs/api.md)")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
    job_id: str | None = None
    record: dict[str, Any] | None = None


# The statuses that say when to come back, and how that is known.
RETRY_AFTER = {
    409: "seconds until the first request with this Idempotency-Key has likely been answered (a guess: 2)",
    429: "quota_wait: the seconds the per-model limiter gave until this model has a slot "
         "(error.retry_after too); otherwise a fixed guess",
    503: "a fixed guess: no wait is known for a service error",
}


def error_responses(*, without: tuple[str, ...] = ()) -> dict[int, dict[str, Any]]:
    """Every error status a route may answer, from the error table (core/errors.py), with its codes."""
    by_status: dict[int, list[str]] = {}
    for code, entry in CODES.items():
        if code not in without:
            by_status.setdefault(entry.http_status, []).append(code)
    return {status: {"description": ", ".join(codes) + (" (Retry-After)" if status in RETRY_AFTER else ""),
                     "content": {"application/json": {"model": ErrorBody}},
                     **({"headers": {"Retry-After": {"description": RETRY_AFTER[status],
                                                     "schema": {"type": "integer"}}}}
                        if status in RETRY_AFTER else {})}
            for status, codes in sorted(by_status.items())}


BULK_CODES = ("bulk_job_not_found", "invalid_manifest", "cost_not_acknowledged")  # the bulk-jobs routes' (bulk.py)
# The POST routes: any job outcome, any transient cause.
ERRORS = error_responses(without=("job_not_found", *BULK_CODES))
IDEMPOTENCY_KEY = Annotated[str | None, Header(alias="idempotency-key", description=(
    "a retried POST with the same key returns the first answer (kept idempotencyTtlSeconds)"))]
