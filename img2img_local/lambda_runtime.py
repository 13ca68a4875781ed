"""Emulated Lambda execution environments: one warm worker process each, driven over a socket pair.

Real Lambda runs each concurrent invocation in its own sandbox: module globals (Powertools' Logger,
Metrics, boto3 clients) are never shared between invocations in flight. So each environment here is a
separate Python process, started as `python -I lambda_runtime.py <fd>` with exactly the Lambda environment
variables (nothing inherited from the developer's shell). It imports the handler once (the INIT phase,
timed as Lambda's Init Duration), then serves invocations one at a time until it is stopped, times out
or crashes; after a timeout or crash it is discarded and the next invocation starts a new one (a cold
start), as in Lambda.

This file runs as a script in the worker processes: it imports only the standard library.
"""
from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

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


def _log_error(payload: dict) -> None:
    """Write the error to the function's log, as the Python runtime does (it ends up in CloudWatch)."""
    print(f"[ERROR] {payload['errorType']}: {payload['errorMessage']}\n{''.join(payload['stackTrace'])}",
          file=sys.stderr, flush=True)


def _max_memory_used_mb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # KiB on Linux


def run_environment(conn: Connection, spec: FunctionSpec) -> None:
    """The worker process's loop: INIT once, then invocations until told to stop."""
    started = time.perf_counter()
    try:
        handler = _load_handler(spec.handler)
    except Exception as exc:  # Lambda reports this as the invocation's error and retries INIT later
        payload = _error_payload(exc, "Runtime.ImportModuleError")
        _log_error(payload)
        conn.send(("init_error", payload, (time.perf_counter() - started) * 1000))
        return
    conn.send(("ready", (time.perf_counter() - started) * 1000))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the event source is gone
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
            _log_error(payload)
        duration_ms = (time.perf_counter() - began) * 1000
        sys.stdout.flush()
        sys.stderr.flush()
        conn.send((outcome, payload, duration_ms, _max_memory_used_mb()))


def main(argv: list[str]) -> None:
    """Entry point of a worker process: `python lambda_runtime.py <socket fd>`."""
    # Ctrl-C and a SIGTERM to the process group reach us too: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(int(argv[1]))
    sys_path, spec_fields = conn.recv()  # plain types: nothing to import before sys.path is set
    sys.path[:] = sys_path
    run_environment(conn, FunctionSpec(**spec_fields))


class ExecutionEnvironment:
    """Parent-side handle of one emulated sandbox. Used by one caller at a time (one poller)."""

    def __init__(self, spec: FunctionSpec, instance_id: int) -> None:
        self.spec = spec
        self.instance_id = instance_id
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None

    @property
    def warm(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def invoke(self, event: Any, request_id: str | None = None) -> InvokeResult:
        """Run one invocation, starting the process first if there is none (a cold start)."""
        request_id = request_id or str(uuid.uuid4())
        init_duration_ms, cold_start = None, not self.warm
        if cold_start:
            self.close(grace_seconds=0)  # reap a sandbox that died while idle
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
            try:
                code = process.wait(1)
            except subprocess.TimeoutExpired:
                code = None
            self.close(grace_seconds=0)
            return InvokeResult(request_id, "error", cold_start=cold_start, init_duration_ms=init_duration_ms,
                                error={"errorType": "Runtime.ExitError",
                                       "errorMessage": f"Runtime exited with exit code {code}"})
        return InvokeResult(request_id, outcome, response=payload if outcome == "success" else None,
                            error=payload if outcome != "success" else None, duration_ms=duration_ms,
                            cold_start=cold_start, init_duration_ms=init_duration_ms,
                            max_memory_used_mb=memory_mb)

    def _start(self) -> tuple[float | None, dict | None]:
        parent_sock, child_sock = socket.socketpair()
        stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        with child_sock:
            self._process = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), str(child_sock.fileno())],
                env=lambda_environment(self.spec, stream), pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL)
        self._conn = conn = Connection(parent_sock.detach())
        try:
            conn.send((list(sys.path), asdict(self.spec)))
            if not conn.poll(INIT_TIMEOUT_SECONDS):
                return None, {"errorType": "Runtime.InitTimeout",
                              "errorMessage": f"INIT did not finish within {INIT_TIMEOUT_SECONDS:.0f} s"}
            message = conn.recv()
        except (EOFError, OSError):
            return None, {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited during INIT"}
        if message[0] == "init_error":
            return message[2], message[1]
        return message[1], None

    def kill(self) -> None:
        """Kill the process from another thread (shutdown): its caller then sees a crashed runtime."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def close(self, grace_seconds: float = 2.0) -> None:
        """Stop the process: ask it to, then SIGKILL (workers ignore SIGTERM). Idempotent."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None:
            return
        if process.poll() is None and grace_seconds > 0 and conn is not None:
            try:
                conn.send((_STOP,))
                process.wait(grace_seconds)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if process.poll() is None:
            process.kill()
        process.wait()
        if conn is not None:
            conn.close()


if __name__ == "__main__":
    main(sys.argv)
