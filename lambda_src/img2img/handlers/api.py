"""HTTP API (API Gateway REST, Powertools APIGatewayRestResolver): the S3 pipeline behind four routes.

    POST /v1/generations   synchronous image-to-image (202 + a job when it would not finish in time)
    POST /v1/jobs          asynchronous: 202 + job id; the job goes through the job queue like an upload
    GET  /v1/jobs/{id}     queued | running | succeeded | failed, the record, presigned output URLs
    POST /v1/uploads       a presigned PUT into the input bucket (parameters as x-amz-meta-params)

Thin by design: every job is a `Trigger` for the same `Pipeline` (same validation, idempotency,
records and events as S3 uploads). Limits, state design and trade-offs: docs/api.md.
The OpenAPI document (docs/openapi.json) is generated from this module: `openapi_document()`.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from functools import lru_cache
from typing import Any, Literal, Optional
from urllib.parse import quote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import Annotated

from ..assembly import get_pipeline, pipeline_for
from ..core import params as P
from ..core import records
from ..core.errors import JobError
from ..core.images import sniff_format
from ..core.pipeline import Job, Pipeline, Resolution
from ..core.triggers import JOB_MESSAGE, job_trigger
from ..observability import logger, metrics, report_outcome, tracer
from ..settings import Settings, get_settings

API_TITLE = "bedrock-img2img API"
API_VERSION = "1.0.0"
# Lambda's synchronous payload limit is 6 MB for the request and for the response. A raw image arrives
# base64-encoded in the event (a third more), so ~4.4 MB of image fits; larger inputs go through
# POST /v1/uploads (presigned, up to maxInputBytes).
MAX_REQUEST_IMAGE_BYTES = 4_400_000
MIN_MODEL_SECONDS = 5  # below this much budget left, the sync route queues the job instead of calling Bedrock
ANSWER_MARGIN_SECONDS = 2  # kept back from the Lambda's remaining time to queue the job and answer
RETRY_AFTER_SECONDS = 10
IMAGE_SUFFIX = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "bmp": "bmp", "tiff": "tif",
                "heic": "heic"}
JOB_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$"
FILENAME = r"^[^/\\\x00-\x1f]{1,200}\.(jpg|jpeg|png|webp|gif|bmp|tif|tiff|heic|heif|JPG|JPEG|PNG|WEBP|GIF|BMP|TIF|TIFF|HEIC|HEIF)$"
# HTTP status for each error code (docs/api.md); retryable faults are 429/503 with Retry-After.
STATUS_FOR_CODE = {
    "invalid_parameters": 422, "missing_parameters": 422, "invalid_image": 422, "content_filtered": 422,
    "model_unavailable": 422, "image_too_large": 413, "source_not_found": 404, "job_not_found": 404,
    "access_denied": 403, "in_progress": 409, "throttled": 429, "retries_exhausted": 503,
    "service_unavailable": 503,
}

app = APIGatewayRestResolver(enable_validation=True)


# ---- models (the OpenAPI document is generated from these) ---------------------------------------
class GenerationRequest(BaseModel):
    """One of `image` (base64) or `source` (an object in the input bucket), plus parameters.

    The same body is accepted by POST /v1/jobs. A raw image body (`Content-Type: image/*`) takes its
    parameters from the query string instead (`?prompt=...&seed=7`, or `?params=<JSON>`)."""

    model_config = ConfigDict(extra="forbid")
    image: Optional[str] = Field(None, description="the input image, base64 (no data: prefix)")
    source: Optional[str] = Field(None, pattern=S3_URI, description="s3://<input bucket>/<key> of an uploaded image")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="job parameters, as in a sidecar (docs/parameters.md)")


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
    content_type: Optional[str] = None
    bytes: Optional[int] = None
    url: str = Field(description="presigned GET URL")


class InlineImage(BaseModel):
    content_type: str
    base64: str


class GenerationResult(BaseModel):
    job_id: str
    status: Literal["succeeded"]
    image: Optional[InlineImage] = Field(None, description="absent on 303: follow `url`")
    url: Optional[str] = Field(None, description="presigned GET URL of the output image")
    record: dict[str, Any] = Field(description="the outcome record (docs/records.md)")


class JobAccepted(BaseModel):
    job_id: str
    status: Literal["queued"]
    status_url: str
    reason: Optional[str] = None


class JobStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    source: Optional[dict[str, Any]] = None
    record: Optional[dict[str, Any]] = Field(None, description="the outcome record, once there is one")
    outputs: list[OutputLink] = Field(default_factory=list)
    error: Optional[dict[str, Any]] = None


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
    job_id: Optional[str] = None
    record: Optional[dict[str, Any]] = None


ERRORS = {413: {"description": "image_too_large", "content": {"application/json": {"model": ErrorBody}}},
          422: {"description": "invalid_parameters, missing_parameters, invalid_image, content_filtered",
                "content": {"application/json": {"model": ErrorBody}}},
          429: {"description": "throttled (Retry-After)", "content": {"application/json": {"model": ErrorBody}}},
          503: {"description": "service_unavailable (Retry-After)",
                "content": {"application/json": {"model": ErrorBody}}}}
IDEMPOTENCY_KEY = Annotated[Optional[str], Header(alias="idempotency-key", description=(
    "a retried POST with the same key returns the first answer (kept idempotencyTtlSeconds)"))]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **details: Any):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers, self.details = headers or {}, details


# ---- the edge, built once per process -------------------------------------------------------------
@lru_cache(maxsize=1)
def edge():
    from ..aws.jobs import ApiEdge

    s = get_settings()
    return ApiEdge(s.idempotency_table, s.job_queue_url, s.idempotency_ttl_seconds, s.api_presign_seconds)


def model_invoker(read_timeout: int):
    """Bedrock for the sync route: one attempt, read timeout within the budget (tests replace this)."""
    return _invokers(max(1, read_timeout))


@lru_cache(maxsize=None)
def _invokers(read_timeout: int):
    from ..aws.bedrock import BedrockInvoker

    return BedrockInvoker(read_timeout=read_timeout, max_attempts=1)


@lru_cache(maxsize=1)
def _answers():
    """Powertools idempotency for POSTs with an Idempotency-Key: keyed on route + key, same table."""
    from aws_lambda_powertools.utilities.idempotency import (DynamoDBPersistenceLayer, IdempotencyConfig,
                                                             idempotent_function)

    from ..aws.clients import client

    s = get_settings()
    config = IdempotencyConfig(expires_after_seconds=s.idempotency_ttl_seconds, event_key_jmespath="[route, key]",
                               raise_on_no_idempotency_key=True)
    persistence = DynamoDBPersistenceLayer(table_name=s.idempotency_table, boto3_client=client("dynamodb"))

    @idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=config,
                         key_prefix="img2img-api")
    def answer_once(request: dict[str, Any], compute) -> dict[str, Any]:
        return compute()

    return config, answer_once


def once(route: str, key: str | None, compute) -> dict[str, Any]:
    """The route's answer, computed once per Idempotency-Key (retryable errors are not remembered)."""
    if not key:
        return compute()
    from aws_lambda_powertools.utilities.idempotency.exceptions import (IdempotencyAlreadyInProgressError,
                                                                        IdempotencyPersistenceLayerError)

    config, answer_once = _answers()
    config.register_lambda_context(app.lambda_context)
    try:
        return answer_once(request={"route": route, "key": key}, compute=compute)
    except IdempotencyAlreadyInProgressError:
        raise ApiError(409, "in_progress", "a request with this Idempotency-Key is still being answered; "
                       "retry in a moment", {"Retry-After": "2"}) from None
    except IdempotencyPersistenceLayerError as exc:
        raise ApiError(503, "service_unavailable", f"the idempotency table is unavailable: {exc}",
                       {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None


# ---- helpers -------------------------------------------------------------------------------------
def new_job_id() -> str:
    return "api-" + uuid.uuid4().hex[:24]


def status_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def _suffix(data: bytes) -> str:
    """A file extension for a stored API input (an unknown one is answered invalid_image by the pipeline)."""
    fmt = sniff_format(data)
    return {"jpeg": "jpg", "tiff": "tif"}.get(fmt, fmt) if fmt else "img"


def check_params(settings: Settings, params: dict[str, Any], where: str, require_prompt: bool) -> None:
    """The core's validation of deployment defaults + these parameters, before anything is stored.

    Without a prompt (it may still come from a folder `_defaults.json` or a sidecar) the other fields
    are validated with a stand-in prompt."""
    merged = P.merge([P.deployment_layer(settings.model_id, settings.output_format, settings.default_prompt,
                                         settings.default_params),
                      P.request_layer(params, where)])
    if not merged.has_prompt:
        if require_prompt:
            raise JobError("missing_parameters", "no prompt: set params.prompt (or text_prompts)")
        merged.positive = [{"text": "stand-in", "weight": 1.0}]
    get_pipeline().validate(merged)


def _query_params() -> dict[str, Any]:
    query = dict(app.current_event.query_string_parameters or {})
    params: dict[str, Any] = {}
    if "params" in query:
        try:
            params = json.loads(query.pop("params"))
        except json.JSONDecodeError as exc:
            raise ApiError(422, "invalid_parameters", f"query parameter params is not JSON: {exc.msg}") from None
        if not isinstance(params, dict):
            raise ApiError(422, "invalid_parameters", "query parameter params must be a JSON object")
    params.update(query)
    return params


def _inputs(body: GenerationRequest, settings: Settings) -> tuple[bytes | None, dict[str, Any] | None, dict]:
    """(image bytes, or an S3 source, and the parameters) from a JSON or raw-image request."""
    raw = app.context.get("raw_image")
    if raw is not None:
        return raw, None, _query_params()
    if bool(body.image) == bool(body.source):
        raise ApiError(422, "invalid_parameters", "give exactly one of image (base64) or source (s3://...)",
                       errors=[{"field": "image", "source": "request body",
                                "message": "exactly one of image or source is required"}])
    if body.source:
        bucket, key = body.source[5:].split("/", 1)
        if bucket != settings.input_bucket:
            raise ApiError(403, "access_denied", f"source must be in the input bucket s3://{settings.input_bucket}/")
        return None, {"bucket": bucket, "key": key}, body.params
    try:
        data = base64.b64decode(body.image, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_image", "image is not valid base64 (no data: prefix, no line breaks)") from None
    return data, None, body.params


def _limit(settings: Settings) -> int:
    return min(settings.max_input_bytes, MAX_REQUEST_IMAGE_BYTES)


def _prepare_job(body: GenerationRequest, route: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Validate, store the input under api/<job_id>/, write the job item. (job_id, job message, job item)"""
    s = get_settings()
    data, source, params = _inputs(body, s)
    if data is not None and len(data) > _limit(s):
        raise ApiError(413, "image_too_large", f"the image is {len(data):,} bytes; this route accepts at most "
                       f"{_limit(s):,} bytes: upload larger images with POST /v1/uploads")
    check_params(s, params, "request params", require_prompt=False)
    job_id = new_job_id()
    output_prefix = s.output_prefix
    if data is not None:
        key = f"{s.api_prefix}{job_id}/input.{_suffix(data)}"
        version = edge().put_input(s.input_bucket, key, data, "application/octet-stream")
        source = {"bucket": s.input_bucket, "key": key, "version_id": version}
    else:
        output_prefix = f"{s.output_prefix}{s.api_prefix}{job_id}/"
    message = {"type": JOB_MESSAGE, "job_id": job_id, "source": source, "params": params,
               "output": {"prefix": output_prefix}, "origin": "api"}
    item = {"job_id": job_id, "route": route, "message": message, "accepted_at": records.now_iso(),
            "record": {"bucket": s.output_bucket, "key": records.record_key(output_prefix, source["key"])}}
    job = Job(job_trigger(message, origin="api"), "api")
    try:
        # The resolution the worker will do (folder defaults, model rules): a bad job is a 422 now, and
        # the job's idempotency key lets GET /v1/jobs/{id} say `running`.
        if get_pipeline().resolve(job) is Resolution.FAILED:
            raise job.error
        item["job_key"] = job.idempotency_key
    except JobError as exc:
        if exc.retryable:
            raise
        if data is not None:
            _forget_input(s, source)
        raise
    edge().put_job(job_id, item)
    return job_id, message, item


def _forget_input(s: Settings, source: dict[str, Any]) -> None:
    """A rejected request leaves nothing behind (best effort; the input bucket's lifecycle is the backstop)."""
    try:
        from ..aws.clients import client

        client("s3").delete_object(Bucket=source["bucket"], Key=source["key"])
    except Exception:  # noqa: BLE001
        pass


def _accepted(job_id: str, reason: str | None = None) -> dict[str, Any]:
    body = {"job_id": job_id, "status": "queued", "status_url": status_url(job_id)}
    if reason:
        body["reason"] = reason
    return {"status": 202, "body": body, "headers": {"Location": status_url(job_id)}}


def _error_answer(record: dict[str, Any]) -> dict[str, Any]:
    error = record.get("error") or {}
    code = error.get("code", "retries_exhausted")
    return {"status": STATUS_FOR_CODE.get(code, 500), "body": {"error": error, "job_id": record["job_id"],
                                                                "record": record}}


class _CapturingStore:
    """The pipeline's ObjectStore, keeping the bytes of the image it writes (no second GET to answer)."""

    def __init__(self, inner, output_bucket: str):
        self.inner, self.output_bucket, self.images = inner, output_bucket, {}

    def head(self, *a, **k):
        return self.inner.head(*a, **k)

    def get(self, *a, **k):
        return self.inner.get(*a, **k)

    def list_keys(self, *a, **k):
        return self.inner.list_keys(*a, **k)

    def delete(self, *a, **k):
        return self.inner.delete(*a, **k)

    def put(self, bucket, key, data, content_type, metadata=None):
        self.inner.put(bucket, key, data, content_type, metadata)
        if bucket == self.output_bucket and content_type.startswith("image/"):
            self.images[key] = data


class _DeadlineInvoker:
    """Calls Bedrock only while the sync budget allows, with a read timeout inside it."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def invoke(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        left = self.deadline - time.monotonic()
        if left < MIN_MODEL_SECONDS:
            raise JobError("deadline", f"{left:.1f} s left of the sync budget: queued instead", retryable=True)
        return model_invoker(int(left)).invoke(model_id, body)


def _generate(body: GenerationRequest) -> dict[str, Any]:
    s = get_settings()
    started = time.monotonic()
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 - ANSWER_MARGIN_SECONDS
    deadline = started + max(0.0, min(float(s.api_sync_budget_seconds), remaining))
    job_id, message, _ = _prepare_job(body, "POST /v1/generations")
    base = get_pipeline()
    store = _CapturingStore(base.store, s.output_bucket)
    pipeline = Pipeline(settings=s, store=store, model=_DeadlineInvoker(deadline), events=base.events,
                        scheduler=None, guard=base.guard, log=base.log)
    try:
        outcomes = pipeline.handle(job_trigger(message, origin="api"))
    except JobError as exc:
        if exc.code in ("deadline", "model_timeout", "in_progress"):
            # Nothing was stored and the idempotency item was released (or belongs to the run in
            # progress): the worker completes the same job id exactly once.
            edge().enqueue(message)
            logger.info("sync budget exhausted: job queued", extra={"job_id": job_id, "cause": exc.code})
            return _accepted(job_id, f"{exc.code}: {exc.message}")
        edge().delete_job(job_id)
        if exc.code in ("throttled", "quota_exceeded"):
            raise ApiError(429, "throttled", f"Bedrock is throttling: {exc.message}",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        raise ApiError(503, "service_unavailable", f"{exc.code}: {exc.message}",
                       {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    record = outcomes[0]
    report_outcome(record)
    record = {k: v for k, v in record.items() if k != "replayed"}
    if record["status"] != "succeeded":
        return _error_answer(record)
    output = record["outputs"][0]
    app.context["captured"] = store.images
    return {"status": 200, "job_id": job_id, "record": record, "image": output}


def _render(answer: dict[str, Any]) -> Response:
    """An answer (what idempotency remembers) as an HTTP response, in the representation asked for."""
    if "image" not in answer:
        headers = dict(answer.get("headers") or {})
        if answer["status"] in (429, 503):
            headers.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
        return Response(answer["status"], content_types.APPLICATION_JSON, json.dumps(answer["body"]), headers)
    s = get_settings()
    output, record, job_id = answer["image"], answer["record"], answer["job_id"]
    url = edge().presign_get(output["bucket"], output["key"])
    if output["bytes"] > s.api_max_inline_bytes:
        body = {"job_id": job_id, "status": "succeeded", "url": url, "record": record}
        return Response(303, content_types.APPLICATION_JSON, json.dumps(body), {"Location": url})
    data = (app.context.get("captured") or {}).get(output["key"]) or edge().get_object(output["bucket"], output["key"])
    accept = app.current_event.headers.get("accept") or ""
    headers = {"X-Img2img-Job-Id": job_id, "X-Img2img-Record": f"s3://{record['record']['bucket']}/"
               f"{quote(record['record']['key'])}"}
    if accept.startswith("image/"):
        return Response(200, output["content_type"], data, headers)
    body = {"job_id": job_id, "status": "succeeded", "url": url, "record": record,
            "image": {"content_type": output["content_type"], "base64": base64.b64encode(data).decode()}}
    return Response(200, content_types.APPLICATION_JSON, json.dumps(body), headers)


# ---- routes --------------------------------------------------------------------------------------
@app.post("/v1/generations", summary="Image-to-image, synchronously", operation_id="createGeneration",
          responses={200: {"description": "the image (Accept: image/*) or JSON with base64 and the record",
                           "content": {"application/json": {"model": GenerationResult},
                                       "image/png": {"schema": {"type": "string", "format": "binary"}}}},
                     202: {"description": "it would not finish in time: queued, poll status_url",
                           "content": {"application/json": {"model": JobAccepted}}},
                     303: {"description": "the result is too large to return: Location is a presigned URL",
                           "content": {"application/json": {"model": GenerationResult}}},
                     **ERRORS})
def create_generation(body: Annotated[GenerationRequest, Body()],
                      idempotency_key: IDEMPOTENCY_KEY = None):
    return _render(once("POST /v1/generations", idempotency_key, lambda: _generate(body)))


@app.post("/v1/jobs", summary="Queue an image-to-image job", operation_id="createJob",
          responses={202: {"description": "queued", "content": {"application/json": {"model": JobAccepted}}},
                     **ERRORS})
def create_job(body: Annotated[GenerationRequest, Body()], idempotency_key: IDEMPOTENCY_KEY = None):
    def compute() -> dict[str, Any]:
        job_id, message, _ = _prepare_job(body, "POST /v1/jobs")
        edge().enqueue(message)
        return _accepted(job_id)

    return _render(once("POST /v1/jobs", idempotency_key, compute))


@app.get("/v1/jobs/<job_id>", summary="A job's status, record and output URLs", operation_id="getJob",
         responses={200: {"description": "the job", "content": {"application/json": {"model": JobStatus}}},
                    404: {"description": "job_not_found", "content": {"application/json": {"model": ErrorBody}}}})
def get_job(job_id: Annotated[str, Path(pattern=JOB_ID)]) -> JobStatus:
    item = edge().get_job(job_id)
    if item is None:
        raise ApiError(404, "job_not_found", f"no job {job_id} (unknown, or older than idempotencyTtlSeconds)")
    where = item["record"]
    record = edge().record(where["bucket"], where["key"])
    source = (item.get("message") or {}).get("source") or item.get("source")
    if record is None:  # API jobs write to api/<job_id>/...: a record there is this job's
        running = edge().in_progress(item.get("job_key"))
        return JobStatus(job_id=job_id, status="running" if running else "queued", source=source)
    outputs = [OutputLink(bucket=o["bucket"], key=o["key"], content_type=o.get("content_type"),
                          bytes=o.get("bytes"), url=edge().presign_get(o["bucket"], o["key"]))
               for o in record.get("outputs") or []]
    return JobStatus(job_id=job_id, status=record["status"], source=record.get("source"), record=record,
                     outputs=outputs, error=record.get("error"))


@app.post("/v1/uploads", summary="A presigned upload into the input bucket", operation_id="createUpload",
          responses={201: {"description": "PUT the image to url with these headers",
                           "content": {"application/json": {"model": UploadTicket}}}, **ERRORS})
def create_upload(body: Annotated[UploadRequest, Body()], idempotency_key: IDEMPOTENCY_KEY = None):
    def compute() -> dict[str, Any]:
        s = get_settings()
        check_params(s, body.params, "upload params", require_prompt=False)
        metadata = {"params": json.dumps(body.params, separators=(",", ":"))} if body.params else {}
        if sum(len(k) + len(v) for k, v in metadata.items()) > 1800:
            raise ApiError(422, "invalid_parameters", "params take more than S3's 2 KB of metadata: upload them "
                           "as a sidecar <key>.json instead")
        job_id = new_job_id()
        key = f"{s.api_upload_prefix}{job_id}/{body.filename}"
        url = edge().presign_put(s.input_bucket, key, body.content_type, metadata)
        headers = {"Content-Type": body.content_type, **{f"x-amz-meta-{k}": v for k, v in metadata.items()}}
        record = {"bucket": s.output_bucket, "key": records.record_key(s.output_prefix, key)}
        edge().put_job(job_id, {"job_id": job_id, "route": "POST /v1/uploads", "accepted_at": records.now_iso(),
                                "source": {"bucket": s.input_bucket, "key": key}, "record": record})
        ticket = {"job_id": job_id, "method": "PUT", "url": url, "headers": headers, "bucket": s.input_bucket,
                  "key": key, "expires_in": s.api_presign_seconds, "record": record,
                  "status_url": status_url(job_id)}
        return {"status": 201, "body": ticket, "headers": {"Location": status_url(job_id)}}

    return _render(once("POST /v1/uploads", idempotency_key, compute))


# ---- errors --------------------------------------------------------------------------------------
def _error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                    **details: Any) -> Response:
    body = {"error": {"code": code, "message": message, **details}}
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body, default=str), headers or {})


@app.exception_handler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error_response(exc.status, exc.code, exc.message, exc.headers, **exc.details)


@app.exception_handler(JobError)
def _job_error(exc: JobError) -> Response:
    if exc.retryable:
        return _error_response(503, "service_unavailable", f"{exc.code}: {exc.message}",
                               {"Retry-After": str(RETRY_AFTER_SECONDS)})
    return _error_response(STATUS_FOR_CODE.get(exc.code, 422), exc.code, exc.message, **exc.details)


@app.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        entry = {"field": ".".join(loc) or "body", "source": "request", "message": err.get("msg", "invalid")}
        if err.get("type") not in ("missing",) and err.get("input") not in (None, {}):
            entry["value"] = err.get("input")
        errors.append(entry)
    message = "invalid request: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return _error_response(422, "invalid_parameters", message, errors=errors)


# ---- entry point ---------------------------------------------------------------------------------
def _raw_image_event(event: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
    """`Content-Type: image/*` bodies become the route's JSON body (parameters from the query string)."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    if not headers.get("content-type", "").startswith("image/") or event.get("httpMethod") != "POST":
        return event, None
    raw = event.get("body") or ""
    data = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode("latin-1")
    event = {**event, "body": "{}", "isBase64Encoded": False,
             "headers": {**{k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"},
                         "Content-Type": "application/json"}}
    if event.get("multiValueHeaders"):
        event["multiValueHeaders"] = {k: v for k, v in event["multiValueHeaders"].items()
                                      if k.lower() != "content-type"}
    return event, data


@logger.inject_lambda_context(clear_state=True, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    pipeline_for(context)
    event, raw = _raw_image_event(event)
    if raw is not None:
        s = get_settings()
        if len(raw) > _limit(s):
            return _raw_too_large(len(raw), _limit(s))
        app.append_context(raw_image=raw)
    return _with_cors(event, app.resolve(event, context))


def _with_cors(event: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Access-Control-Allow-Origin for the configured origins (API Gateway answers the preflight)."""
    allowed = get_settings().api_cors_origins
    origin = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "origin"), "")
    if allowed and ("*" in allowed or origin in allowed):
        headers = response.setdefault("multiValueHeaders", {})
        headers["Access-Control-Allow-Origin"] = ["*" if "*" in allowed else origin]
        headers["Access-Control-Expose-Headers"] = ["Location,Retry-After"]
        if "*" not in allowed:
            headers["Vary"] = ["Origin"]
    return response


def _raw_too_large(size: int, limit: int) -> dict[str, Any]:
    body = {"error": {"code": "image_too_large", "message": f"the image is {size:,} bytes; this route accepts at "
                      f"most {limit:,} bytes: upload larger images with POST /v1/uploads"}}
    return {"statusCode": 413, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body),
            "isBase64Encoded": False}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of this API (committed as docs/openapi.json; a test keeps it current).

    Generated by Powertools from the routes and models above, plus what it cannot see: the raw
    image request body of the POST routes and the IAM (SigV4) security scheme."""
    doc = json.loads(app.get_openapi_json_schema(
        title=API_TITLE, version=API_VERSION,
        description="Image-to-image on Amazon Bedrock, the same pipeline as S3 uploads. See docs/api.md."))
    for path in ("/v1/generations", "/v1/jobs"):
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        content["image/*"] = {"schema": {"type": "string", "format": "binary"},
                              "description": "the raw image; parameters in the query string"}
    doc.setdefault("components", {})["securitySchemes"] = {
        "sigv4": {"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"},
        "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}
    doc["security"] = [{"sigv4": []}]
    return doc
