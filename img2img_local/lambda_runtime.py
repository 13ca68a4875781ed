"""Emulated Lambda execution environments: one warm worker process each, driven over a pipe.

Real Lambda runs each concurrent invocation in its own sandbox: module globals (Powertools' Logger,
Metrics, boto3 clients) are never shared between invocations in flight. So each environment here is a
separate `spawn`ed process that imports the handler once (the INIT phase, timed as Lambda's Init
Duration), then serves invocations one at a time until it is stopped, times out or crashes; after a
timeout or crash it is discarded and the next invocation starts a new one (a cold start), as in Lambda.

This module is imported by the worker processes: keep its imports light (no boto3).
"""
from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import resource
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

ACCOUNT_ID = "123456789012"
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's limit for the INIT phase of on-demand functions
_STOP = "stop"
_INVOKE = "invoke"


@dataclass(frozen=True)
class FunctionSpec:
    """What Lambda knows about a function: code entry point, limits and environment variables."""

    handler: str  # "package.module.function"
    environment: dict[str, str] = field(default_factory=dict)
    function_name: str = "img2img-local-worker"
    memory_mb: int = 1024
    timeout_seconds: float = 360.0
    region: str = "us-east-1"
    python_version: str = "3.12"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"


@dataclass(frozen=True)
class InvokeResult:
    """One invocation as the Lambda service saw it (what the event source and the REPORT line use)."""

    request_id: str
    outcome: str  # "success" | "error" | "timeout"
    response: Any = None
    error: dict | None = None  # {"errorType", "errorMessage", "stackTrace"}, as Lambda reports it
    duration_ms: float = 0.0
    cold_start: bool = False
    init_duration_ms: float | None = None  # how long INIT took, on a cold start
    max_memory_used_mb: int = 0


class LambdaContext:
    """The fields of the Python runtime's context object (awslambdaric's LambdaContext).

    As in the real runtime, `memory_limit_in_mb` and `function_version` come from the environment
    and are strings.
    """

    def __init__(self, request_id: str, invoked_function_arn: str, deadline_epoch_ms: int) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline_epoch_ms = deadline_epoch_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_epoch_ms - int(time.time() * 1000))


def lambda_environment(spec: FunctionSpec, log_stream_name: str) -> dict[str, str]:
    """The variables a Lambda sandbox has: the runtime's reserved ones, then the function's own.

    Nothing leaks in from the developer's shell (profiles, credentials, config files), as in Lambda.
    """
    reserved = {
        "_HANDLER": spec.handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{spec.python_version}",
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name,
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    }
    return {**reserved, **spec.environment}


def _load_handler(path: str) -> Callable[[Any, LambdaContext], Any]:
    module_name, _, function_name = path.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {path!r} is not of the form module.function")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def _error_payload(exc: BaseException, error_type: str | None = None) -> dict:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[-12:],
    }


def _max_memory_used_mb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux


def run_environment(conn, spec: FunctionSpec, log_stream_name: str) -> None:
    """Entry point of a worker process: INIT once, then invocations until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent shuts us down
    os.environ.clear()
    os.environ.update(lambda_environment(spec, log_stream_name))
    time.tzset()
    started = time.perf_counter()
    try:
        handler = _load_handler(spec.handler)
    except Exception as exc:  # Lambda reports this as the invocation's error and retries INIT later
        conn.send(("init_error", _error_payload(exc, "Runtime.ImportModuleError"),
                   (time.perf_counter() - started) * 1000))
        return
    conn.send(("ready", (time.perf_counter() - started) * 1000))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] == _STOP:
            return
        _, request_id, event, deadline_epoch_ms = message
        context = LambdaContext(request_id, spec.function_arn, deadline_epoch_ms)
        began = time.perf_counter()
        try:
            # Lambda serializes the response as JSON: something that cannot be is a function error.
            outcome, payload = "success", json.loads(json.dumps(handler(event, context)))
        except Exception as exc:
            outcome, payload = "error", _error_payload(exc)
        duration_ms = (time.perf_counter() - began) * 1000
        sys.stdout.flush()
        sys.stderr.flush()
        conn.send((outcome, payload, duration_ms, _max_memory_used_mb()))


class ExecutionEnvironment:
    """Parent-side handle of one emulated sandbox. Used by one caller at a time (one poller)."""

    def __init__(self, spec: FunctionSpec, instance_id: int) -> None:
        self.spec = spec
        self.instance_id = instance_id
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None

    @property
    def warm(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def invoke(self, event: Any, request_id: str | None = None) -> InvokeResult:
        """Run one invocation, starting the process first if there is none (a cold start)."""
        request_id = request_id or str(uuid.uuid4())
        init_duration_ms, cold_start = None, not self.warm
        if cold_start:
            init_duration_ms, init_error = self._start()
            if init_error is not None:
                self.close(grace_seconds=0)
                return InvokeResult(request_id, "error", error=init_error, cold_start=True,
                                    init_duration_ms=init_duration_ms)
        conn, process = self._conn, self._process
        deadline_epoch_ms = int(time.time() * 1000 + self.spec.timeout_seconds * 1000)
        try:
            conn.send((_INVOKE, request_id, event, deadline_epoch_ms))
            if not conn.poll(self.spec.timeout_seconds):
                self.close(grace_seconds=0)  # Lambda discards a sandbox that timed out
                return InvokeResult(request_id, "timeout", cold_start=cold_start,
                                    init_duration_ms=init_duration_ms,
                                    duration_ms=self.spec.timeout_seconds * 1000,
                                    error={"errorType": "Sandbox.Timedout", "errorMessage":
                                           f"Task timed out after {self.spec.timeout_seconds:.2f} seconds"})
            outcome, payload, duration_ms, memory_mb = conn.recv()
        except (EOFError, OSError):
            process.join(1)
            code = process.exitcode
            self.close(grace_seconds=0)
            return InvokeResult(request_id, "error", cold_start=cold_start, init_duration_ms=init_duration_ms,
                                error={"errorType": "Runtime.ExitError",
                                       "errorMessage": f"Runtime exited with exit code {code}"})
        return InvokeResult(request_id, outcome, response=payload if outcome == "success" else None,
                            error=payload if outcome != "success" else None, duration_ms=duration_ms,
                            cold_start=cold_start, init_duration_ms=init_duration_ms,
                            max_memory_used_mb=memory_mb)

    def _start(self) -> tuple[float | None, dict | None]:
        context = multiprocessing.get_context("spawn")
        parent_conn, child_conn = context.Pipe()
        stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        self._process = context.Process(target=run_environment, args=(child_conn, self.spec, stream),
                                        name=f"{self.spec.function_name}-{self.instance_id}", daemon=True)
        self._process.start()
        child_conn.close()
        self._conn = parent_conn
        try:
            if not parent_conn.poll(INIT_TIMEOUT_SECONDS):
                return None, {"errorType": "Runtime.InitTimeout",
                              "errorMessage": f"INIT did not finish within {INIT_TIMEOUT_SECONDS:.0f} s"}
            message = parent_conn.recv()
        except (EOFError, OSError):
            return None, {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited during INIT"}
        if message[0] == "init_error":
            return message[2], message[1]
        return message[1], None

    def kill(self) -> None:
        """Kill the process from another thread (shutdown): its caller then sees a crashed runtime."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()

    def close(self, grace_seconds: float = 2.0) -> None:
        """Stop the process: politely first, then SIGTERM, then SIGKILL. Idempotent."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None:
            return
        if process.is_alive() and grace_seconds > 0:
            try:
                conn.send((_STOP,))
            except (OSError, ValueError):
                pass
            process.join(grace_seconds)
        if process.is_alive():
            process.terminate()
            process.join(2)
        if process.is_alive():
            process.kill()
            process.join()
        if conn is not None:
            conn.close()
        process.close()
