"""Helpers for the API handler tests: API Gateway REST proxy events and the `api` fixture's client."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aws_world import Context


@dataclass(frozen=True)
class Gateway:
    """How a client reaches the API, and the REST proxy event API Gateway then sends to Lambda.

    `mount` is what precedes /v1 in the URL: the stage on the execute-api domain (which API Gateway
    strips from `path`), a custom domain's base path (which it leaves in `path`), or nothing."""

    domain: str
    mount: str
    custom_domain: bool
    stage: str = "prod"

    def event(self, method: str, url_path: str, body: Any = None, *, headers: dict | None = None,
              query: dict | None = None, binary: bool = False) -> dict:
        from img2img_local.api_server import RESOURCES

        assert url_path.startswith(self.mount + "/"), f"{url_path} is not under {self.domain}{self.mount}"
        route = url_path[len(self.mount):]
        resource, match = next((t, m) for t, pattern in RESOURCES if (m := pattern.match(route)))
        headers = {"Content-Type": "application/json", "Host": self.domain, "X-Forwarded-Proto": "https",
                   "X-Forwarded-Port": "443", **(headers or {})}
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if binary and body is not None:
            body = base64.b64encode(body).decode()
        return {
            "resource": resource, "path": url_path if self.custom_domain else route, "httpMethod": method,
            "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
            "pathParameters": match.groupdict() or None, "stageVariables": None,
            "requestContext": {"resourceId": "a1b2c3", "resourcePath": resource, "httpMethod": method,
                               "extendedRequestId": "Ab1CdEfGhIjKlMn=", "requestTime": "09/Apr/2025:12:34:56 +0000",
                               "path": url_path, "accountId": "123456789012", "protocol": "HTTP/1.1",
                               "stage": self.stage, "domainPrefix": self.domain.split(".")[0],
                               "requestTimeEpoch": 1744202096000, "requestId": "api-req-1",
                               "identity": {"sourceIp": "127.0.0.1", "userAgent": "test"},
                               "domainName": self.domain, "apiId": "abc123defg"},
            "body": body, "isBase64Encoded": binary,
        }


EXECUTE_API = Gateway("abc123defg.execute-api.us-east-1.amazonaws.com", "/prod", custom_domain=False)
CUSTOM_DOMAIN_BASE_PATH = Gateway("api.example.com", "/img", custom_domain=True)
CUSTOM_DOMAIN_ROOT = Gateway("api.example.com", "", custom_domain=True)


def rest_event(method: str, path: str, body: Any = None, **kwargs) -> dict:
    """The event for a request to the API's route `path` on its execute-api URL (stage `prod`)."""
    return EXECUTE_API.event(method, EXECUTE_API.mount + path, body, **kwargs)


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
