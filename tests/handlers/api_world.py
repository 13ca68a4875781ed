"""Helpers for the API handler tests: API Gateway REST proxy events and the `api` fixture's client."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aws_world import Context


def rest_event(method: str, path: str, body: Any = None, *, headers: dict | None = None,
               query: dict | None = None, binary: bool = False) -> dict:
    """An API Gateway REST proxy event as API Gateway sends it to Lambda."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if binary and body is not None:
        body = base64.b64encode(body).decode()
    return {
        "resource": path, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/v1{path}", "stage": "v1",
                           "requestId": "api-req-1", "accountId": "123456789012",
                           "identity": {"sourceIp": "127.0.0.1"}},
        "body": body, "isBase64Encoded": binary,
    }


class ShortContext(Context):
    """A Lambda context with little time left (the sync route's budget)."""

    def __init__(self, remaining_ms: int):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        return self.remaining_ms


@dataclass
class Answer:
    status: int
    headers: dict
    raw: bytes
    is_base64: bool

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def call(event: dict, context: Any = None) -> Answer:
    from img2img.handlers import api

    response = api.handler(event, context or Context())
    body = response.get("body") or ""
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for k, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(k.lower(), values[-1])
    return Answer(response["statusCode"], headers, raw, bool(response.get("isBase64Encoded")))


def post(path: str, body: Any, **kwargs) -> Answer:
    context = kwargs.pop("context", None)
    return call(rest_event("POST", path, body, **kwargs), context)


def get(path: str, **kwargs) -> Answer:
    return call(rest_event("GET", path, None, **kwargs))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def query_string(params: dict) -> str:
    return urlencode(params)
