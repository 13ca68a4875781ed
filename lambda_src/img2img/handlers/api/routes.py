"""The routes, one Powertools Router per group; each is a thin adapter over service.py."""
from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from ...core.errors import JobError, http_status
from . import service
from .schemas import (
    BULK_CODES,
    ERRORS,
    IDEMPOTENCY_KEY,
    JOB_ID,
    GenerationRequest,
    GenerationResult,
    JobAccepted,
    JobStatus,
    UploadRequest,
    UploadTicket,
    error_responses,
)

ERRORS_ALL = error_responses(without=BULK_CODES)
generations = Router()
jobs = Router()
uploads = Router()
errors = Router()
ROUTERS = (generations, jobs, uploads, errors)


def _call(router: Router) -> service.Call:
    event, context = router.current_event, router.lambda_context
    return service.Call(query=dict(event.query_string_parameters or {}),
                        accept=event.headers.get("accept") or "",
                        raw_image=router.context.get("raw_image"), mount=router.context.get("mount", ""),
                        remaining_seconds=context.get_remaining_time_in_millis() / 1000,
                        lambda_context=context, route=f"{event.http_method} {event.resource}")


@generations.post("/v1/generations", summary="Image-to-image, synchronously", operation_id="createGeneration",
                  responses={200: {"description": "the image (Accept: image/*) or JSON with base64 and the record",
                                   "content": {"application/json": {"model": GenerationResult},
                                               "image/png": {"schema": {"type": "string", "format": "binary"}}}},
                             202: {"description": "not finished within the sync budget: the same job goes on, "
                                                  "poll status_url",
                                   "content": {"application/json": {"model": JobAccepted}}},
                             303: {"description": "the result is too large to return: Location is a presigned URL",
                                   "content": {"application/json": {"model": GenerationResult}}},
                             **ERRORS})
def create_generation(body: Annotated[GenerationRequest, Body()], idempotency_key: IDEMPOTENCY_KEY = None):
    call = _call(generations)
    return service.render(call, service.once(call, idempotency_key,
                                             lambda: service.generate(call, body)))


@jobs.post("/v1/jobs", summary="Queue an image-to-image job", operation_id="createJob",
           responses={202: {"description": "queued", "content": {"application/json": {"model": JobAccepted}}},
                      **ERRORS})
def create_job(body: Annotated[GenerationRequest, Body()], idempotency_key: IDEMPOTENCY_KEY = None):
    call = _call(jobs)
    return service.render(call, service.once(call, idempotency_key,
                                             lambda: service.queue_job(call, body)))


@jobs.get("/v1/jobs/<job_id>", summary="A job's status, record and output URLs", operation_id="getJob",
          responses={200: {"description": "the job", "content": {"application/json": {"model": JobStatus}}},
                     **{status: ERRORS_ALL[status] for status in (404, 422, 503)}})
def get_job(job_id: Annotated[str, Path(pattern=JOB_ID)]) -> JobStatus:
    return JobStatus(**service.job_status(job_id))


@uploads.post("/v1/uploads", summary="A presigned upload into the input bucket", operation_id="createUpload",
              responses={201: {"description": "PUT the image to url with these headers",
                               "content": {"application/json": {"model": UploadTicket}}}, **ERRORS})
def create_upload(body: Annotated[UploadRequest, Body()], idempotency_key: IDEMPOTENCY_KEY = None):
    call = _call(uploads)
    return service.render(call, service.once(call, idempotency_key,
                                             lambda: service.upload_ticket(body.filename, body.content_type,
                                                                           body.params)))


@errors.exception_handler(service.ApiError)
def _api_error(exc: service.ApiError) -> Response:
    return service.error_response(exc.status, exc.code, exc.message, exc.headers, **exc.details)


@errors.exception_handler(JobError)
def _job_error(exc: JobError) -> Response:
    if exc.retryable:
        return _api_error(service.transient_error(exc))
    return service.error_response(http_status(exc.code), exc.code, exc.message, **exc.details)


@errors.exception_handler(RequestValidationError)
def _validation_error(exc: RequestValidationError) -> Response:
    """422, unless the request reuses an Idempotency-Key: then the key's first answer, whatever this body."""
    call = _call(errors)
    key = errors.current_event.headers.get("idempotency-key")
    if key and call.route.startswith("POST ") and (first := service.remembered(call.route, key)) is not None:
        return service.render(call, first)
    found = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        entry = {"field": ".".join(loc) or "body", "source": "request", "message": err.get("msg", "invalid")}
        if err.get("type") not in ("missing",) and err.get("input") not in (None, {}):
            entry["value"] = err.get("input")
        found.append(entry)
    message = "invalid request: " + "; ".join(f"{e['field']}: {e['message']}" for e in found)
    return service.error_response(422, "invalid_parameters", message, errors=found)
