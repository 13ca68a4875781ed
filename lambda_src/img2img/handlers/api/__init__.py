"""HTTP API (API Gateway REST, Powertools APIGatewayRestResolver): the S3 pipeline behind six routes.

    POST /v1/generations   synchronous image-to-image (202 for the same job when it does not finish in time)
    POST /v1/jobs          asynchronous: 202 + job id; the job goes through the job queue like an upload
    GET  /v1/jobs/{id}     queued | running | succeeded | failed, the record, presigned output URLs
    POST /v1/uploads       a presigned PUT into the input bucket (parameters as x-amz-meta-params)
    POST /v1/bulk-jobs     a bulk job over a manifest's objects (S3 Batch Operations); GET .../{id} its progress

Modules: routes.py (one Router per group, thin), service.py (jobs, waiting, answers), schemas.py
(pydantic models). Every job runs in the worker, through the same `Pipeline` as S3 uploads.
Limits, state design and trade-offs: docs/api.md. docs/openapi.json is `openapi_document()`.
"""
from __future__ import annotations

import base64
import json
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig

from ...assembly import pipeline_for
from ...observability import logger, metrics, tracer
from ...settings import get_settings
from . import bulk, links, routes, service

API_TITLE = "bedrock-img2img API"
API_VERSION = "1.0.0"
EXPOSE_HEADERS = ["Location", "Retry-After", service.REPLAYED_HEADER]


@lru_cache(maxsize=1)  # one resolver per process: the Routers point at the last one built
def resolver(cors_origins: tuple[str, ...] = ()) -> APIGatewayRestResolver:
    """The resolver for these CORS origins (`apiCorsOrigins`; none: no CORS headers at all).

    API Gateway answers the preflight; Powertools adds Access-Control-Allow-Origin to the answers."""
    cors = None
    if cors_origins:
        first, *extra = ("*",) if "*" in cors_origins else cors_origins
        cors = CORSConfig(allow_origin=first, extra_origins=extra or None, expose_headers=EXPOSE_HEADERS)
    app = APIGatewayRestResolver(enable_validation=True, cors=cors)
    for router in (*routes.ROUTERS, bulk.router):
        app.include_router(router)
    return app


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


def _routed(event: dict[str, Any]) -> dict[str, Any]:
    """The event with `path` below the mount point (a custom domain's base path is in front of it)."""
    path = links.route_path(event)
    return event if event.get("path") == path else {**event, "path": path}


@logger.inject_lambda_context(clear_state=True, correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    pipeline_for(context)
    s = get_settings()
    app = resolver(tuple(s.api_cors_origins))
    event = _routed(event)
    if not _json_or_image(event):
        return _refusal(415, "unsupported_media_type", "send JSON (Content-Type: application/json) or the raw "
                        "image (Content-Type: image/png, image/jpeg...)")
    event, raw = _raw_image_event(event)
    app.append_context(mount=links.mount_path(event))
    if raw is not None:
        limit = service.request_image_limit(s)
        if len(raw) > limit:
            return _refusal(413, "image_too_large", service.too_large(len(raw), limit))
        app.append_context(raw_image=raw)
    return app.resolve(event, context)


def _json_or_image(event: dict[str, Any]) -> bool:
    """A POST body is JSON or an image; no header counts as JSON (Powertools would parse forms, or fail)."""
    if event.get("httpMethod") != "POST":
        return True
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    return media in ("", "application/json") or media.startswith("image/")


def _refusal(status: int, code: str, message: str) -> dict[str, Any]:
    """An answer before routing, in the API's error format."""
    return {"statusCode": status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"error": {"code": code, "message": message}}), "isBase64Encoded": False}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of this API (committed as docs/openapi.json; a test keeps it current).

    Generated by Powertools from the routes and models, plus what it cannot see: the raw image request
    body of the POST routes and the IAM (SigV4) security scheme."""
    resolver.cache_clear()  # the Routers point at the resolver built last: the next invocation builds its own
    doc = json.loads(resolver().get_openapi_json_schema(
        title=API_TITLE, version=API_VERSION,
        description="Image-to-image on Amazon Bedrock, the same pipeline as S3 uploads. See docs/api.md."))
    for path in ("/v1/generations", "/v1/jobs"):
        content = doc["paths"][path]["post"]["requestBody"]["content"]
        content["image/*"] = {"schema": {"type": "string", "format": "binary",  # 3.1: no description here
                                         "description": "the raw image; parameters in the query string"}}
    replayed = {service.REPLAYED_HEADER: {"description": "`true`: this is the first answer to this Idempotency-Key, "
                                                         "replayed (docs/api.md)", "schema": {"const": "true"}}}
    for path, item in doc["paths"].items():
        for status, response in item.get("post", {}).get("responses", {}).items():
            if status.startswith("2") or status == "303" or path == "/v1/generations":
                response.setdefault("headers", {}).update(replayed)
    doc.setdefault("components", {})["securitySchemes"] = {
        "sigv4": {"type": "apiKey", "name": "Authorization", "in": "header",
                  "x-amazon-apigateway-authtype": "awsSigv4"},
        "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}
    doc["security"] = [{"sigv4": []}]
    return doc


def __getattr__(name: str) -> Any:
    """`app`: a resolver with every route (tests/infra/test_api.py compares its routes with the stack's)."""
    if name == "app":
        return resolver()
    raise AttributeError(name)
