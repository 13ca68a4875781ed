"""The API's own links (Location, status_url), built from the request that asked, so they stay on its URL.

API Gateway (REST) tells the function the route (`resource`, `pathParameters`) and the path the client
called (`requestContext.path`); what is in front of the route there is where the API is mounted:

    https://<id>.execute-api.<region>.amazonaws.com/prod/v1/jobs   requestContext.path /prod/v1/jobs  -> /prod
    https://api.example.com/img/v1/jobs (base path mapping `img`)   requestContext.path /img/v1/jobs   -> /img
    https://api.example.com/v1/jobs (mapping with no base path)     requestContext.path /v1/jobs       -> ""
    http://127.0.0.1:<port>/v1/jobs (img2img_local/api_server.py)   requestContext.path /v1/jobs       -> ""

Links are path-absolute references (`/prod/v1/jobs/<id>`): they resolve against the URL the client
called, whatever its host. A custom domain with a base path also sends `path` with the base path in
front (`/img/v1/jobs`), which no route matches: `route_path` is what the resolver routes on.
"""
from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

_PARAMETER = re.compile(r"\{([^}+]+)\+?\}")


def route_path(event: dict[str, Any]) -> str:
    """The request's path below the mount point: the route's template with its parameters filled in."""
    request = APIGatewayProxyEvent(event)
    template, parameters = request.resource or request.path, request.path_parameters or {}
    return _PARAMETER.sub(lambda m: parameters.get(m.group(1), m.group(0)), template)


def mount_path(event: dict[str, Any]) -> str:
    """Where the API is mounted on the URL the client called (`/prod`, `/img`, or "" at the root)."""
    request = APIGatewayProxyEvent(event)
    called = (request.request_context.path or request.path or "").rstrip("/")
    own = route_path(event).rstrip("/")
    if own and called.endswith(own):
        return called[: len(called) - len(own)]
    stage = request.request_context.stage  # the path was encoded differently: at least keep the stage
    return f"/{stage}" if stage and called.startswith(f"/{stage}/") else ""


def link(mount: str, target: str) -> str:
    """A link of the API (`/v1/jobs/<id>`) as the client can follow it; other URLs are left alone."""
    return mount + target if target.startswith("/") else target
