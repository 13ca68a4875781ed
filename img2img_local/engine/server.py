"""bedrock-runtime's InvokeModel wire protocol on loopback, so an unmodified boto3 client can call it.

Point boto3 at it with `AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:PORT` (or `endpoint_url=`).
The engine answers like Bedrock (status codes, `x-amzn-ErrorType`, JSON bodies, response shapes) and
misbehaves on request (see faults.py), with control endpoints under `/_engine/`.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import signal
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from img2img.operations import BY_MODEL, PROFILE_GEOGRAPHY, SEED

from . import converse, render, services
from .control import SERVED, ControlPlane, region_of
from .faults import EOL_MESSAGE, ERRORS, THROTTLED_MESSAGE, ConfigError, EngineConfig, FaultState
from .validation import SD35, SDXL, VALIDATORS, RequestInvalid, ServiceRequest

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25_000_000
ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
FAULT_HEADER = "x-img2img-fault"
LATENCY_HEADER = "x-img2img-latency-ms"
MODEL_IDS = (SDXL, SD35, *BY_MODEL)
MODEL_ALIASES = {SDXL: SDXL, f"{SDXL}:0": SDXL, SD35: SD35, **{model: model for model in BY_MODEL}}
PROFILE_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca")
# The Image Services are offered through one geography's profiles only (`us.`); SDXL/SD3.5 through any.
SERVICE_PREFIXES = (PROFILE_GEOGRAPHY,)
MAX_SEED = {SDXL: 4294967295, SD35: 4294967294, **{model: int(SEED.maximum) for model in BY_MODEL}}
_MODEL_ARN = re.compile(r"arn:aws[a-z-]*:bedrock:[a-z0-9-]*:\d*:(?:foundation-model|inference-profile)/(.+)")
_INVOKE_PATH = re.compile(r"/model/([^/]+)/invoke")
_CONVERSE_PATH = re.compile(r"/model/([^/]+)/converse")
_FOUNDATION_MODEL_PATH = re.compile(r"/foundation-models/([^/]+)")


class BedrockError(Exception):
    """An error answer: `name` is the x-amzn-ErrorType; `outcome` is how the counters file it."""

    def __init__(self, name: str, message: str | None = None, outcome: str | None = None, **fields: Any) -> None:
        super().__init__(message or ERRORS[name][1])
        self.name, self.status = name, ERRORS[name][0]
        self.outcome = outcome or name
        self.fields = fields


def resolve_model(model_id: str) -> str | None:
    """Base model id for a model id, inference-profile id or ARN; None when the engine doesn't serve it."""
    arn = _MODEL_ARN.fullmatch(model_id)
    if arn:
        model_id = arn.group(1)
    prefix, _, rest = model_id.partition(".")
    if prefix in PROFILE_PREFIXES:
        if rest in BY_MODEL and prefix not in SERVICE_PREFIXES:
            return None
        model_id = rest
    return MODEL_ALIASES.get(model_id)


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", lowered) for word in words)


class Engine:
    """One InvokeModel call from raw bytes to (status, headers, JSON body), independent of HTTP plumbing."""

    def __init__(self, config: EngineConfig) -> None:
        self.faults = FaultState(config)

    def invoke(self, model_id: str, headers: dict[str, str], body: bytes | None) -> tuple[int, dict, dict]:
        """`body` is None when it exceeded the size limit (and was discarded unread)."""
        started = time.monotonic()
        model = resolve_model(model_id)
        self.faults.enter()
        outcome = "InternalServerException"
        try:
            payload, outcome = self._invoke(model, model_id, headers, body)
            latency = round((time.monotonic() - started) * 1000)
            return 200, {"X-Amzn-Bedrock-Invocation-Latency": str(latency)}, payload
        except BedrockError as error:
            outcome = error.outcome
            return error.status, {"x-amzn-ErrorType": error.name + ERROR_TYPE_SUFFIX}, \
                {"message": str(error), **error.fields}
        except Exception as error:  # an engine bug: answer like Bedrock's 500 instead of dropping the connection
            log.exception("engine failure on %s", model_id)
            return 500, {"x-amzn-ErrorType": "InternalServerException" + ERROR_TYPE_SUFFIX}, \
                {"message": f"{ERRORS['InternalServerException'][1]} ({type(error).__name__}: {error})"}
        finally:
            self.faults.leave(model or model_id, outcome)

    def converse(self, model_id: str, headers: dict[str, str], body: bytes | None) -> tuple[int, dict, dict]:
        """One Converse call of a text model (engine/converse.py), with the same fault knobs as InvokeModel."""
        started = time.monotonic()
        name = _MODEL_ARN.fullmatch(model_id).group(1) if _MODEL_ARN.fullmatch(model_id) else model_id
        self.faults.enter()
        outcome = "InternalServerException"
        try:
            if not converse.is_text_model(name):
                raise BedrockError("ValidationException", f"The provided model identifier {model_id!r} is not a "
                                   "text model this engine serves with Converse (amazon.nova-*, anthropic.*)")
            if not self.faults.admit():
                raise BedrockError("ThrottlingException", THROTTLED_MESSAGE, outcome="throttled")
            try:
                time.sleep(self._latency(headers))
                fault = headers.get(FAULT_HEADER) or self.faults.draw_error()
                if fault:
                    raise self._injected(fault, name)
                try:
                    document = json.loads(body or b"")
                    text = converse.user_text(document)
                    payload = converse.answer(document, _mentions(text, self.faults.config.blocked_words),
                                              round((time.monotonic() - started) * 1000))
                except (UnicodeDecodeError, json.JSONDecodeError, converse.ConverseInvalid) as err:
                    raise BedrockError("ValidationException", str(err)) from None
            finally:
                self.faults.release()
            outcome = "filtered" if payload["stopReason"] == "content_filtered" else "success"
            return 200, {}, payload
        except BedrockError as error:
            outcome = error.outcome
            return error.status, {"x-amzn-ErrorType": error.name + ERROR_TYPE_SUFFIX}, \
                {"message": str(error), **error.fields}
        finally:
            self.faults.leave(name, outcome)

    def _invoke(self, model: str | None, model_id: str, headers: dict[str, str],
                body: bytes | None) -> tuple[dict, str]:
        config = self.faults.config
        if body is None:
            raise BedrockError("ValidationException", "1 validation error detected: Value at 'body' failed to "
                               f"satisfy constraint: Member must have length less than or equal to {MAX_BODY_BYTES}")
        if model is None:
            raise BedrockError("ResourceNotFoundException", "Could not resolve the foundation model from the "
                               f"provided model identifier {model_id!r}. This engine serves {SDXL}, {SD35} "
                               f"and the Image Services ({', '.join(BY_MODEL)}; profiles "
                               f"{', '.join(p + '.' for p in SERVICE_PREFIXES)} only).")
        if model in config.eol_models or model_id in config.eol_models:
            raise BedrockError("ResourceNotFoundException", EOL_MESSAGE)
        refusal = ControlPlane(config, "").refusal(model)
        if refusal:
            raise BedrockError("ResourceNotFoundException", refusal)
        if not self.faults.admit(model):
            raise BedrockError("ThrottlingException", THROTTLED_MESSAGE, outcome="throttled")
        try:
            return self._admitted(model, headers, body)
        finally:
            self.faults.release()

    @staticmethod
    def foundation_model(control: ControlPlane, model_id: str) -> tuple[int, dict, dict]:
        """GetFoundationModel: the table's lifecycle, or Bedrock's 404 (unknown, retired, not in region)."""
        model = resolve_model(model_id) or converse.text_model_base(model_id)
        if model is not None and control.retired(model):
            error = BedrockError("ResourceNotFoundException", EOL_MESSAGE)
        elif model is None or not control.listed(model):
            error = BedrockError("ResourceNotFoundException", f"Could not find the model {model_id!r} in "
                                 f"{control.region or 'this region'}.")
        else:
            return 200, {}, {"modelDetails": control.details(model)}
        return error.status, {"x-amzn-ErrorType": error.name + ERROR_TYPE_SUFFIX}, {"message": str(error)}

    def _admitted(self, model: str, headers: dict[str, str], body: bytes) -> tuple[dict, str]:
        config = self.faults.config
        time.sleep(self._latency(headers, model))
        fault = headers.get(FAULT_HEADER) or self.faults.draw_error()
        if fault:
            raise self._injected(fault, model)
        request = self._parse(model, headers, body)
        if _mentions(request.prompt, config.blocked_words):
            raise BedrockError("ValidationException",
                               "invalid_prompts: One or more prompts contains filtered words.")
        seed = request.seed or self.faults.random_seed(MAX_SEED[model])
        flagged = _mentions(request.prompt, config.filter_words)
        if flagged and model != SDXL:
            return {"seeds": [seed], "finish_reasons": ["Filter reason: output image"]}, "filtered"
        try:
            image = services.render(request, seed) if isinstance(request, ServiceRequest) \
                else render.render(request, seed)
        except OSError as err:  # a truncated or corrupt file whose header looked fine
            field = "init_image" if model == SDXL else "image"
            raise BedrockError("ValidationException", f"invalid_image: #/{field}: cannot be decoded: {err}") from None
        if model == SDXL:
            if flagged:
                image = render.filtered(image)
            artifact = {"seed": seed, "base64": base64.b64encode(render.encode(image, "png")).decode(),
                        "finishReason": "CONTENT_FILTERED" if flagged else "SUCCESS"}
            return {"result": "success", "artifacts": [artifact]}, "filtered" if flagged else "success"
        encoded = base64.b64encode(render.encode(image, request.output_format)).decode()
        return {"seeds": [seed], "finish_reasons": [None], "images": [encoded]}, "success"

    def _latency(self, headers: dict[str, str], model: str | None = None) -> float:
        forced = headers.get(LATENCY_HEADER)
        if forced is None:
            return self.faults.latency_seconds(model)
        try:
            return max(0.0, float(forced)) / 1000
        except ValueError:
            raise BedrockError("ValidationException", f"{LATENCY_HEADER}: {forced!r} is not a number") from None

    @staticmethod
    def _injected(name: str, model: str) -> BedrockError:
        if name not in ERRORS:
            return BedrockError("ValidationException", f"{FAULT_HEADER}: unknown error {name!r}; "
                                f"known: {', '.join(ERRORS)}")
        if name == "ModelErrorException":
            return BedrockError(name, originalStatusCode=500,
                                resourceName=f"arn:aws:bedrock:us-east-1::foundation-model/{model}")
        return BedrockError(name)

    @staticmethod
    def _parse(model: str, headers: dict[str, str], body: bytes):
        content_type = headers.get("content-type", "application/json")
        if "json" not in content_type:
            raise BedrockError("ValidationException", f"Content-Type {content_type!r} is not supported; "
                                                      "send application/json")
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BedrockError("ValidationException", f"Malformed input request: body is not JSON ({err}), "
                                                      "please reformat your input and try again.") from None
        try:
            return VALIDATORS[model](document)
        except RequestInvalid as err:
            raise BedrockError("ValidationException", str(err)) from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses connections
    disable_nagle_algorithm = True  # headers and body go out as separate writes; don't wait 40 ms between
    server: _HTTPServer

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        invoke = _INVOKE_PATH.fullmatch(path)
        body = self._read_body()
        conversation = _CONVERSE_PATH.fullmatch(path)
        if invoke:
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._reply(*self.server.engine.invoke(unquote(invoke.group(1)), headers, body))
        elif conversation:
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._reply(*self.server.engine.converse(unquote(conversation.group(1)), headers, body))
        elif path == "/_engine/config":
            self._control(lambda: self.server.engine.faults.configure(json.loads(body or b"{}")))
        elif path == "/_engine/reset":
            self._control(self._reset)
        else:
            self._unknown(path)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        faults = self.server.engine.faults
        control = ControlPlane(faults.config, region_of({k.lower(): v for k, v in self.headers.items()}))
        model = _FOUNDATION_MODEL_PATH.fullmatch(path)
        if model:
            self._reply(*self.server.engine.foundation_model(control, unquote(model.group(1))))
        elif path == "/foundation-models":
            self._reply(200, {}, {"modelSummaries": [control.details(m) for m in SERVED if control.listed(m)]})
        elif path == "/inference-profiles":
            self._reply(200, {}, {"inferenceProfileSummaries": control.profiles()})
        elif path == "/_engine/stats":
            self._reply(200, {}, faults.stats())
        elif path == "/_engine/config":
            self._reply(200, {}, {"config": faults.config.to_json()})
        else:
            self._unknown(path)

    def _reset(self) -> EngineConfig:
        self.server.engine.faults.reset()
        return self.server.engine.faults.config

    def _control(self, change) -> None:
        try:
            self._reply(200, {}, {"config": change().to_json()})
        except (ConfigError, TypeError, ValueError) as err:
            self._reply(400, {}, {"message": f"bad engine config: {err}"})

    def _unknown(self, path: str) -> None:
        self._reply(404, {"x-amzn-ErrorType": "UnknownOperationException" + ERROR_TYPE_SUFFIX},
                    {"message": f"no operation at {self.command} {path}"})

    def _read_body(self) -> bytes | None:
        """The body, or None if it is over Bedrock's limit (then drained, so the connection stays usable)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length <= MAX_BODY_BYTES:
            return self.rfile.read(length)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)
        return None

    def _reply(self, status: int, headers: dict, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.engine = engine
        super().__init__(address, _Handler)


def require_loopback(host: str) -> None:
    """The engine has no authentication: refuse anything reachable from another machine."""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            addresses = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, None)}
        except socket.gaierror as err:
            raise ValueError(f"cannot resolve engine host {host!r}: {err}") from None
    if not all(address.is_loopback for address in addresses):
        raise ValueError(f"the offline engine binds to loopback only, not {host!r} (try 127.0.0.1)")


class EngineServer:
    """The engine in a daemon thread: `EngineServer(config, port=0).start()`, then `.url`, `.stop()`."""

    def __init__(self, config: EngineConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        require_loopback(host)
        self.engine = Engine(config or EngineConfig())
        self._httpd = _HTTPServer((host, port), self.engine)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def config(self) -> EngineConfig:
        return self.engine.faults.config

    def start(self) -> EngineServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="img2img-engine", daemon=True)
        self._thread.start()
        return self

    def stats(self) -> dict:
        return self.engine.faults.stats()

    def configure(self, **changes: Any) -> EngineConfig:
        return self.engine.faults.configure(changes)

    def reset(self) -> None:
        self.engine.faults.reset()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 8750, config: EngineConfig | None = None) -> None:
    """Run the engine in the foreground until SIGINT or SIGTERM (the `img2img engine` command)."""
    server = EngineServer(config, host=host, port=port).start()
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    print(f"img2img offline engine listening on {server.url}", flush=True)
    print(f"  export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={server.url}", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
