"""The HTTP API on loopback: API Gateway's REST proxy integration, emulated in front of the real handler.

Each HTTP request becomes the event API Gateway would send (`resource`, `path`, `httpMethod`, headers and
multi-value headers, query strings, `pathParameters`, `requestContext`, the body base64-encoded for the
binary media type `image/*`), and is invoked on `img2img.handlers.api.handler` in an emulated Lambda
sandbox (img2img_local/lambda_runtime.py: a separate warm process with exactly the Lambda environment).
The proxy response is written back as HTTP. No credentials: authorization (IAM/API keys), stage
throttling and the 10 MB request cap are API Gateway features that are not emulated (docs/api.md).
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from img2img_local.lambda_runtime import ExecutionEnvironment, FunctionSpec

log = logging.getLogger(__name__)

API_HANDLER = "img2img.handlers.api.handler"
# The REST API's resources (infra/api.py) as (template, regex): the event's `resource` and path parameters.
RESOURCES = (
    ("/v1/generations", re.compile(r"^/v1/generations$")),
    ("/v1/jobs", re.compile(r"^/v1/jobs$")),
    ("/v1/jobs/{job_id}", re.compile(r"^/v1/jobs/(?P<job_id>[^/]+)$")),
    ("/v1/uploads", re.compile(r"^/v1/uploads$")),
    ("/v1/bulk-jobs", re.compile(r"^/v1/bulk-jobs$")),
    ("/v1/bulk-jobs/{bulk_id}", re.compile(r"^/v1/bulk-jobs/(?P<bulk_id>[^/]+)$")),
)
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's REST payload limit
STAGE = "local"


def proxy_event(method: str, raw_path: str, headers: dict[str, list[str]], body: bytes) -> dict | None:
    """The REST proxy event for a request, or None when no resource matches (API Gateway's 403/404)."""
    split = urlsplit(raw_path)
    path = split.path
    found = next(((template, match) for template, pattern in RESOURCES if (match := pattern.match(path))), None)
    if found is None:
        return None
    template, match = found
    query = parse_qs(split.query, keep_blank_values=True)
    single = {k: v[-1] for k, v in headers.items()}
    content_type = next((v for k, v in single.items() if k.lower() == "content-type"), "")
    binary = content_type.startswith("image/")
    request_id = str(uuid.uuid4())
    return {
        "resource": template, "path": path, "httpMethod": method,
        "headers": single or None, "multiValueHeaders": headers or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": match.groupdict() or None, "stageVariables": None,
        # Served at the root of the URL, like a custom domain with no base path: requestContext.path is
        # the path called, and the API's links (handlers/api/links.py) have nothing in front of /v1.
        "requestContext": {"resourcePath": template, "httpMethod": method, "path": path, "stage": STAGE,
                           "domainName": "127.0.0.1", "requestId": request_id, "extendedRequestId": request_id,
                           "accountId": "123456789012", "protocol": "HTTP/1.1",
                           "identity": {"sourceIp": "127.0.0.1", "userAgent": single.get("User-Agent")}},
        "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace")) if body else None,
        "isBase64Encoded": bool(body) and binary,
    }


class LocalApi:
    """`start()` serves on 127.0.0.1:<port> (0 = any free port); `stop()` ends the server and the sandbox."""

    def __init__(self, environment: dict[str, str], *, port: int = 0, timeout_seconds: float = 30,
                 memory_mb: int = 1024, function_name: str = "img2img-local-api", python_version: str = "3.12"):
        self.spec = FunctionSpec(handler=API_HANDLER, environment=environment, function_name=function_name,
                                 memory_mb=memory_mb, timeout_seconds=timeout_seconds, python_version=python_version)
        self.port = port
        self.url = ""
        self._sandbox = ExecutionEnvironment(self.spec, 0)
        self._lock = threading.Lock()  # one sandbox: one invocation at a time, as one Lambda instance
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LocalApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # one line per request, like an access log
                log.info("api %s", fmt % args)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_REQUEST_BYTES:
                    self._answer(413, {"Content-Type": "application/json"}, json.dumps({"error": {
                        "code": "image_too_large", "message": "the request exceeds API Gateway's 10 MB"}}).encode())
                    return
                body = self.rfile.read(length) if length else b""
                headers: dict[str, list[str]] = {}
                for name, value in self.headers.items():
                    headers.setdefault(name, []).append(value)
                event = proxy_event(self.command, self.path, headers, body)
                if event is None:
                    self._answer(404, {"Content-Type": "application/json"},
                                 b'{"message":"Missing Authentication Token"}')
                    return
                status, out_headers, out_body = api.invoke(event)
                self._answer(status, out_headers, out_body)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def __getattr__(self, name: str):
                """Every method (`do_GET`, `do_QUERY`...) reaches the handler, which answers the ones no
                route has: never http.server's own 501 page."""
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)
        self._thread.start()
        return self

    def invoke(self, event: dict) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            result = self._sandbox.invoke(event, event["requestContext"]["requestId"])
        if result.outcome != "success" or not isinstance(result.response, dict):
            log.error("api invocation %s: %s", result.outcome, result.error)
            status = 504 if result.outcome == "timeout" else 502
            return status, {"Content-Type": "application/json"}, json.dumps(
                {"message": "Internal server error" if status == 502 else "Endpoint request timed out"}).encode()
        response = result.response
        headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers[name] = ",".join(values)
        body = response.get("body") or ""
        data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
        return int(response.get("statusCode", 200)), headers, data

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._sandbox.close()
