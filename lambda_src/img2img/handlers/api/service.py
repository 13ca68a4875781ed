"""What the API's routes do: validate and store a job, queue it, wait for its record, render answers.

Every job is a `Trigger` for the same `Pipeline` as S3 uploads, and only the worker runs it: the API
validates and resolves (a bad job is a 4xx before anything is queued), queues the job message and,
for the sync route, waits for the job's outcome record. It never calls the model itself, so a job is
generated once whatever the deadline does (docs/api.md, "The time budget").
"""
from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools.event_handler import Response, content_types

from ...assembly import get_pipeline
from ...core import params as P
from ...core import records
from ...core.errors import JobError, http_status
from ...core.images import sniff_format
from ...core.pipeline import Job, Resolution
from ...core.triggers import JOB_MESSAGE, job_trigger
from ...observability import logger
from ...operations import ALPHA_MASK, COMPANIONS
from ...settings import Settings, get_settings
from . import links
from .schemas import GenerationRequest

# Lambda's synchronous payload limit is 6 MB for the request and for the response. A raw image arrives
# base64-encoded in the event (a third more), so ~4.4 MB of image fits; larger inputs go through
# POST /v1/uploads (presigned, up to maxInputBytes).
MAX_REQUEST_IMAGE_BYTES = 4_400_000
ANSWER_MARGIN_SECONDS = 2  # kept back from the Lambda's remaining time to read the image and answer
RETRY_AFTER_SECONDS = 10  # Retry-After when no wait is known (a service error, the idempotency table)
POLL_FIRST_SECONDS, POLL_MAX_SECONDS = 0.25, 1.0  # the sync route's back-off between record reads
REPLAYED_HEADER = "Idempotent-Replayed"  # on an answer that is the first answer to its Idempotency-Key


class ApiError(Exception):
    """An answer that is not a job outcome; the HTTP status is the error table's (core/errors.py)."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.status, self.code, self.message = http_status(code), code, message
        self.headers, self.details = headers or {}, details


@dataclass(frozen=True)
class Call:
    """What a route needs from the invocation (the resolver's event and Lambda context)."""

    query: dict[str, str]
    accept: str
    raw_image: bytes | None
    remaining_seconds: float
    lambda_context: Any
    route: str = ""  # `POST /v1/jobs`: method and resource, the Idempotency-Key's scope
    mount: str = ""  # where the API is on the URL called (links.py): `/prod`, a custom domain's base path, ""


# ---- the edge and idempotent answers, built once per process -------------------------------------
@lru_cache(maxsize=1)
def edge():
    from ...aws.jobs import ApiEdge

    s = get_settings()
    return ApiEdge(s.idempotency_table, s.job_queue_url, s.idempotency_ttl_seconds, s.api_presign_seconds)


@lru_cache(maxsize=1)
def _answers():
    """Powertools idempotency for POSTs with an Idempotency-Key: keyed on route + key, same table."""
    from ...aws.idempotency import API_KEY_PREFIX, Idempotency

    s = get_settings()
    idempotency = Idempotency(s.idempotency_table, s.idempotency_ttl_seconds, API_KEY_PREFIX, "[route, key]")
    return idempotency, idempotency.once_function()


def once(call: Call, key: str | None, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The route's answer, computed once per Idempotency-Key (retryable errors are not remembered).

    The key alone names the answer: a retry with another body gets the first answer too, marked
    `Idempotent-Replayed: true` (docs/api.md, "Idempotency-Key")."""
    if not key:
        return compute()
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
    )

    idempotency, answer_once = _answers()
    idempotency.register_lambda_context(call.lambda_context)
    computed = []
    try:
        answer = answer_once(key={"route": call.route, "key": key}, work=lambda: computed.append(1) or compute())
    except IdempotencyAlreadyInProgressError:
        raise ApiError("in_progress", "a request with this Idempotency-Key is still being answered; "
                       "retry in a moment", {"Retry-After": "2"}) from None
    except IdempotencyPersistenceLayerError as exc:
        raise ApiError("service_unavailable", f"the idempotency table is unavailable: {exc}",
                       {"Retry-After": retry_after(None)}) from None
    return answer if computed else replayed(answer)


def remembered(route: str, key: str) -> dict[str, Any] | None:
    """The first answer to this route + Idempotency-Key, marked replayed, or None (none, or unreadable:
    the caller answers as if there were none)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = _answers()[0].remembered({"route": route, "key": key})
    except (BotoCoreError, ClientError) as exc:
        logger.warning("idempotency table unreadable: answering without the first answer", extra={"error": str(exc)})
        return None
    return replayed(answer) if answer is not None else None


def replayed(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "headers": {**(answer.get("headers") or {}), REPLAYED_HEADER: "true"}}


def retry_after(error: dict[str, Any] | None) -> str:
    """Retry-After for a transient answer: the wait the per-model limiter gave (`retry_after` of a
    quota_wait), else the fixed `RETRY_AFTER_SECONDS`, a guess."""
    wait = (error or {}).get("retry_after")
    known = isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait >= 1
    return str(int(wait)) if known else str(RETRY_AFTER_SECONDS)


def transient_error(exc: JobError) -> ApiError:
    """A transient fault while the API handled the request (nothing was queued, nothing is remembered).

    A quota wait is the error table's status for it (429 `quota_wait`) with `Retry-After` = the limiter's
    `retry_after`; any other cause is 503 `service_unavailable` with the fixed guess."""
    if exc.code == "quota_wait":
        return ApiError(exc.code, exc.message, {"Retry-After": retry_after(exc.details)}, **exc.details)
    return ApiError("service_unavailable", f"{exc.code}: {exc.message}", {"Retry-After": retry_after(None)})


# ---- helpers -------------------------------------------------------------------------------------
def new_job_id() -> str:
    return "api-" + uuid.uuid4().hex[:24]


def status_url(job_id: str) -> str:
    """The job's status link from the API's root; `render` puts the request's mount point in front."""
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
        try:  # operations without a prompt (remove-background, upscale-fast...) validate as they are
            get_pipeline().validate(merged)
            return
        except JobError as exc:
            if exc.code != "missing_parameters":
                raise
            if require_prompt:
                raise JobError("missing_parameters", "no prompt: set params.prompt (or text_prompts)") from None
        merged.positive = [{"text": "stand-in", "weight": 1.0}]
    get_pipeline().validate(merged)


def _query_params(query: dict[str, str]) -> dict[str, Any]:
    query = dict(query)
    params: dict[str, Any] = {}
    if "params" in query:
        try:
            params = json.loads(query.pop("params"))
        except json.JSONDecodeError as exc:
            raise ApiError("invalid_parameters", f"query parameter params is not JSON: {exc.msg}") from None
        if not isinstance(params, dict):
            raise ApiError("invalid_parameters", "query parameter params must be a JSON object")
    params.update(query)
    return params


@dataclass(frozen=True)
class Inputs:
    data: bytes | None                 # the image, when the request carries it
    source: dict[str, Any] | None      # else the input-bucket object it names
    params: dict[str, Any]
    attached: dict[str, bytes] = field(default_factory=dict)  # companion name -> image bytes (base64 fields)


def _inputs(call: Call, body: GenerationRequest, s: Settings) -> Inputs:
    """The image (bytes, or an S3 source), the parameters and the attached companions of a JSON or
    raw-image request."""
    if call.raw_image is not None:
        return Inputs(call.raw_image, None, _request_params(s, _query_params(call.query)))
    if bool(body.image) == bool(body.source):
        raise ApiError("invalid_parameters", "give exactly one of image (base64) or source (s3://...)",
                       errors=[{"field": "image", "source": "request body",
                                "message": "exactly one of image or source is required"}])
    params = _request_params(s, dict(body.params))
    if body.operation is not None:
        _set_once(params, "operation", body.operation)
    attached: dict[str, bytes] = {}
    for companion in COMPANIONS:
        value = getattr(body, companion.name)
        if value is None:
            continue
        if _is_reference(value):
            _set_once(params, companion.name, _absolute(s, companion.name, value))
        else:
            if companion.name in params:
                raise _conflict(companion.name, "<base64>", params[companion.name])
            attached[companion.name] = _decode(value, companion.name)
    if body.source:
        bucket, key = body.source[5:].split("/", 1)
        if bucket != s.input_bucket:
            raise ApiError("access_denied", f"source must be in the input bucket s3://{s.input_bucket}/")
        return Inputs(None, {"bucket": bucket, "key": key}, params, attached)
    return Inputs(_decode(body.image, "image"), None, params, attached)


def _decode(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        problem = ("is not valid base64" if name == "image" else
                   "is neither an image key (masks/room.png, s3://...) nor valid base64")
        raise ApiError("invalid_image", f"{name} {problem} (no data: prefix, no line breaks)",
                       errors=[{"field": name, "source": "request body", "message": problem}]) from None


def _is_reference(value: str) -> bool:
    """A key (`masks/room.png`: image keys end in a suffix, and base64 has no `.`), an s3:// URI, or `alpha`."""
    return value == ALPHA_MASK or "." in value or ":" in value


def _absolute(s: Settings, name: str, value: str) -> str:
    """A companion reference of the request body as the job's absolute key `/key` (the input bucket's only)."""
    if value == ALPHA_MASK:
        return value
    if value.startswith("s3://"):
        return "/" + _input_bucket_key(s, name, value)
    return "/" + value.lstrip("/")


def _input_bucket_key(s: Settings, name: str, uri: str, where: str = "request body") -> str:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if bucket != s.input_bucket or not key:
        raise ApiError("access_denied", f"{name} must be an object in the input bucket s3://{s.input_bucket}/: "
                       "companion images are never read from another bucket",
                       errors=[{"field": name, "source": where, "value": uri,
                                "message": "is not in the input bucket", "allowed": f"s3://{s.input_bucket}/<key>, "
                                "a key, or base64"}])
    return key


def _request_params(s: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as in a sidecar (companion keys relative to the image's folder, or /absolute); an
    s3:// URI of the input bucket becomes its /absolute key, another bucket is refused now."""
    for name in (c.name for c in COMPANIONS):
        value = params.get(name)
        if isinstance(value, str) and value.startswith("s3://"):
            params[name] = "/" + _input_bucket_key(s, f"params.{name}", value, "request params")
    return params


def _set_once(params: dict[str, Any], name: str, value: Any) -> None:
    """A body field that params may also carry: either place, not both with different values."""
    if name in params and params[name] != value:
        raise _conflict(name, value, params[name])
    params[name] = value


def _conflict(name: str, value: Any, in_params: Any) -> ApiError:
    return ApiError("invalid_parameters", f"{name} is given twice, as a body field and in params, with "
                    "different values: set one of them",
                    errors=[{"field": name, "source": "request body", "value": value,
                             "message": f"conflicts with params.{name} = {in_params!r}"}])


def _companion_keys(s: Settings, job_id: str, input_key: str | None,
                    attached: dict[str, bytes]) -> dict[str, str]:
    """Where attached companions are stored: beside the API's input under the convention names
    (`<input key>.mask.png`), or (the image is a `source`) under api/<job_id>/."""
    keys = {}
    for companion in COMPANIONS:
        if companion.name in attached:
            suffix = _suffix(attached[companion.name])
            if suffix == "img":
                raise ApiError("invalid_image", f"{companion.name} is not an image (PNG, JPEG, WebP...)",
                               errors=[{"field": companion.name, "source": "request body",
                                        "message": "is not an image"}])
            keys[companion.name] = (f"{input_key}.{companion.suffix}.{suffix}" if input_key
                                    else f"{s.api_prefix}{job_id}/{companion.suffix}.{suffix}")
    return keys


def request_image_limit(s: Settings) -> int:
    return min(s.max_input_bytes, MAX_REQUEST_IMAGE_BYTES)


def too_large(size: int, limit: int) -> str:
    return (f"the image is {size:,} bytes; this route accepts at most {limit:,} bytes: upload larger images "
            "with POST /v1/uploads")


# ---- jobs ----------------------------------------------------------------------------------------
def prepare_job(call: Call, body: GenerationRequest) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Validate, store the input under api/<job_id>/, write the job item. (job_id, job message, record location)"""
    s = get_settings()
    inputs = _inputs(call, body, s)
    data, source, params, limit = inputs.data, inputs.source, inputs.params, request_image_limit(s)
    for name, blob in (("image", data), *inputs.attached.items()):
        if blob is not None and len(blob) > limit:
            message = too_large(len(blob), limit)
            raise ApiError("image_too_large", message if name == "image" else f"{name}: {message}")
    job_id = new_job_id()
    input_key = f"{s.api_prefix}{job_id}/input.{_suffix(data)}" if data is not None else None
    companions = _companion_keys(s, job_id, input_key, inputs.attached)
    # Validated with the attached companions as explicit keys: an operation that takes none says so now.
    check_params(s, {**params, **{name: "/" + key for name, key in companions.items()}}, "request params",
                 require_prompt=False)
    if input_key is None:  # no API input to sit beside: the job names them
        params.update({name: "/" + key for name, key in companions.items()})
    stored = []
    for name, key in companions.items():  # before the input: the worker finds them when it sees the input
        edge().put_input(s.input_bucket, key, inputs.attached[name], "application/octet-stream")
        stored.append(key)
    output_prefix = s.output_prefix
    if input_key is not None:
        version = edge().put_input(s.input_bucket, input_key, data, "application/octet-stream")
        source = {"bucket": s.input_bucket, "key": input_key, "version_id": version}
        stored.append(input_key)
    else:
        output_prefix = f"{s.output_prefix}{s.api_prefix}{job_id}/"
    message = {"type": JOB_MESSAGE, "job_id": job_id, "source": source, "params": params,
               "output": {"prefix": output_prefix}, "origin": "api"}
    where = {"bucket": s.output_bucket, "key": records.record_key(output_prefix, source["key"])}
    item = {"job_id": job_id, "route": call.route, "message": message, "accepted_at": records.now_iso(),
            "record": where}
    job = Job(job_trigger(message, origin="api"), "api")
    # The resolution the worker will do (folder defaults, model rules, companions): a bad job is a 4xx
    # now, and the job's idempotency key lets GET /v1/jobs/{id} say `running`.
    if get_pipeline().resolve(job) is Resolution.FAILED:
        if not job.error.retryable:
            for key in stored:
                edge().delete_input(s.input_bucket, key)
        raise job.error
    item["job_key"] = job.idempotency_key
    edge().put_job(job_id, item)
    return job_id, message, where


def queue_job(call: Call, body: GenerationRequest) -> dict[str, Any]:
    job_id, message, _ = prepare_job(call, body)
    edge().enqueue(message)
    return accepted(job_id)


def wait_for_record(read: Callable[[], dict | None], deadline: float, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, Any] | None:
    """Read until there is a record or the deadline passes (back-off 0.25 s doubling to 1 s; a last read
    at the deadline)."""
    delay = POLL_FIRST_SECONDS
    while True:
        record = read()
        if record is not None:
            return record
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(delay, left))
        delay = min(delay * 2, POLL_MAX_SECONDS)


def await_record(where: dict[str, str], deadline: float) -> dict[str, Any] | None:
    """The job's outcome record once the worker wrote it, or None at the deadline (tests replace this)."""
    return wait_for_record(lambda: edge().record(where["bucket"], where["key"]), deadline)


def generate(call: Call, body: GenerationRequest) -> dict[str, Any]:
    """Queue the job like POST /v1/jobs, then wait for its record within the sync budget.

    Past the deadline the answer is 202 for the same job, which goes on in the worker: the model is
    called once, by the worker, in every case."""
    s = get_settings()
    budget = min(float(s.api_sync_budget_seconds), call.remaining_seconds - ANSWER_MARGIN_SECONDS)
    deadline = time.monotonic() + max(0.0, budget)
    job_id, message, where = prepare_job(call, body)
    edge().enqueue(message)
    record = await_record(where, deadline)
    if record is None:
        logger.info("sync budget exhausted: the job goes on in the worker", extra={"job_id": job_id})
        return accepted(job_id, f"not finished within the sync budget ({max(0.0, budget):.0f} s): "
                                "the job goes on, poll status_url")
    if record["status"] != "succeeded":
        return error_answer(record)
    return {"status": 200, "job_id": job_id, "record": record, "image": record["outputs"][0]}


def job_status(job_id: str) -> dict[str, Any]:
    item = edge().get_job(job_id)
    if item is None:
        raise ApiError("job_not_found", f"no job {job_id} (unknown, or older than idempotencyTtlSeconds)")
    where = item["record"]
    record = edge().record(where["bucket"], where["key"])
    source = (item.get("message") or {}).get("source") or item.get("source")
    if record is None:  # API jobs write to api/<job_id>/...: a record there is this job's
        running = edge().in_progress(item.get("job_key"))
        return {"job_id": job_id, "status": "running" if running else "queued", "source": source}
    outputs = [{"bucket": o["bucket"], "key": o["key"], "content_type": o.get("content_type"),
                "bytes": o.get("bytes"), "url": edge().presign_get(o["bucket"], o["key"])}
               for o in record.get("outputs") or []]
    return {"job_id": job_id, "status": record["status"], "source": record.get("source"), "record": record,
            "outputs": outputs, "error": record.get("error")}


def upload_ticket(filename: str, content_type: str, params: dict[str, Any]) -> dict[str, Any]:
    s = get_settings()
    check_params(s, params, "upload params", require_prompt=False)
    metadata = {"params": json.dumps(params, separators=(",", ":"))} if params else {}
    if sum(len(k) + len(v) for k, v in metadata.items()) > 1800:
        raise ApiError("invalid_parameters", "params take more than S3's 2 KB of metadata: upload them "
                       "as a sidecar <key>.json instead")
    job_id = new_job_id()
    key = f"{s.api_upload_prefix}{job_id}/{filename}"
    url = edge().presign_put(s.input_bucket, key, content_type, metadata)
    headers = {"Content-Type": content_type, **{f"x-amz-meta-{k}": v for k, v in metadata.items()}}
    record = {"bucket": s.output_bucket, "key": records.record_key(s.output_prefix, key)}
    edge().put_job(job_id, {"job_id": job_id, "route": "POST /v1/uploads", "accepted_at": records.now_iso(),
                            "source": {"bucket": s.input_bucket, "key": key}, "record": record})
    ticket = {"job_id": job_id, "method": "PUT", "url": url, "headers": headers, "bucket": s.input_bucket,
              "key": key, "expires_in": s.api_presign_seconds, "record": record, "status_url": status_url(job_id)}
    return {"status": 201, "body": ticket, "headers": {"Location": status_url(job_id)}}


# ---- answers (what idempotency remembers) and their rendering ------------------------------------
def accepted(job_id: str, reason: str | None = None) -> dict[str, Any]:
    body = {"job_id": job_id, "status": "queued", "status_url": status_url(job_id)}
    if reason:
        body["reason"] = reason
    return {"status": 202, "body": body, "headers": {"Location": status_url(job_id)}}


def error_answer(record: dict[str, Any]) -> dict[str, Any]:
    error = record.get("error") or {}
    return {"status": http_status(error.get("code", "retries_exhausted")),
            "body": {"error": error, "job_id": record["job_id"], "record": record}}


def render(call: Call, answer: dict[str, Any]) -> Response:
    """An answer as an HTTP response, in the representation asked for (images are re-read from S3)."""
    if "image" not in answer:
        headers, body = dict(answer.get("headers") or {}), answer["body"]
        if answer["status"] in (429, 503):
            headers.setdefault("Retry-After", retry_after(body.get("error")))
        # Links are remembered from the API's root: a replay through another URL gets links on its own.
        if "Location" in headers:
            headers["Location"] = links.link(call.mount, headers["Location"])
        if "status_url" in body:
            body = {**body, "status_url": links.link(call.mount, body["status_url"])}
        return Response(answer["status"], content_types.APPLICATION_JSON, json.dumps(body), headers)
    s = get_settings()
    output, record, job_id = answer["image"], answer["record"], answer["job_id"]
    url, kept = edge().presign_get(output["bucket"], output["key"]), answer.get("headers") or {}
    if output["bytes"] > s.api_max_inline_bytes:
        body = {"job_id": job_id, "status": "succeeded", "url": url, "record": record}
        return Response(303, content_types.APPLICATION_JSON, json.dumps(body), {**kept, "Location": url})
    data = edge().get_object(output["bucket"], output["key"])
    headers = {**kept, "X-Img2img-Job-Id": job_id, "X-Img2img-Record": f"s3://{record['record']['bucket']}/"
               f"{quote(record['record']['key'])}"}
    if call.accept.startswith("image/"):
        return Response(200, output["content_type"], data, headers)
    body = {"job_id": job_id, "status": "succeeded", "url": url, "record": record,
            "image": {"content_type": output["content_type"], "base64": base64.b64encode(data).decode()}}
    return Response(200, content_types.APPLICATION_JSON, json.dumps(body), headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **details: Any) -> Response:
    body = {"error": {"code": code, "message": message, **details}}
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body, default=str), headers or {})
