"""Bedrock InvokeModel as the core's ModelInvoker, with each service error mapped to what we do about it.

Permanent (failure record now): ValidationException (content_filtered when the prompt was refused),
AccessDenied, ResourceNotFound; whichever of them says the model was retired (end of life, or Legacy and
unused by this account: img2img/lifecycle.py knows the wording) is `model_retired`, naming the successor.
Transient (back to the queue): throttling, quotas, model timeouts/errors, 5xx, network faults. Anything
else is `internal_error`: a request this pipeline should not have made (transient is a closed list).
The table is in docs/errors.md.
"""
from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from ..core.errors import JobError, transient
from ..lifecycle import is_retirement, move_advice
from ..observability import BEDROCK_LATENCY, BEDROCK_THROTTLES, metrics, tracer
from .clients import NETWORK_FAULTS, client

_PERMANENT = ("ValidationException", "AccessDeniedException", "ResourceNotFoundException")
_TRANSIENT = {
    "ThrottlingException": "throttled",
    "ModelNotReadyException": "throttled",
    "ServiceQuotaExceededException": "quota_exceeded",
    "ModelTimeoutException": "model_timeout",
    "ModelErrorException": "model_error",
    "InternalServerException": "service_error",
    "ServiceUnavailableException": "service_error",
}


def classify(exc: Exception, model_id: str) -> JobError:
    """A Bedrock client error as a JobError with a stable code and an actionable message."""
    if isinstance(exc, ReadTimeoutError):
        return transient("model_timeout", f"Bedrock did not answer in time for {model_id}")
    if isinstance(exc, NETWORK_FAULTS):
        return transient("service_error", f"could not reach Bedrock: {exc}")
    if not isinstance(exc, ClientError):  # e.g. ParamValidationError: our request is malformed
        return JobError("internal_error", f"the request for {model_id} could not be sent: "
                        f"{type(exc).__name__}: {exc}"[:500], details={"exception": type(exc).__name__})
    code = exc.response.get("Error", {}).get("Code", "")
    message = exc.response.get("Error", {}).get("Message", "") or str(exc)
    if code in _PERMANENT and is_retirement(message):
        return JobError("model_retired", f"Bedrock retired {model_id}: {message} To fix: "
                        f"{move_advice(model_id)}", details={"bedrock_error": code})
    if code == "ValidationException":
        if "invalid_prompts" in message:
            return JobError("content_filtered", f"Bedrock refused the prompt (invalid_prompts): {message}",
                            details={"bedrock_error": code})
        return JobError("invalid_parameters", f"Bedrock rejected the request for {model_id}: {message}",
                        details={"bedrock_error": code})
    if code == "AccessDeniedException":
        return JobError("access_denied", f"not allowed to invoke {model_id}: {message}. Request model access "
                        "in the Bedrock console and check the worker role", details={"bedrock_error": code})
    if code == "ResourceNotFoundException":
        return JobError("model_unavailable", f"{model_id} is not available: {message}. Check the model id and "
                        "the Bedrock region (`img2img doctor` shows where each configured model is offered)",
                        details={"bedrock_error": code})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    cause = _TRANSIENT.get(code) or ("service_error" if status >= 500 else "throttled" if status == 429 else None)
    if cause is None:
        return JobError("internal_error", f"Bedrock answered {code or status} for {model_id}: {message}"[:1000],
                        details={"bedrock_error": code})
    return transient(cause, f"Bedrock {code or 'error'} for {model_id}: {message}", bedrock_error=code)


_THROTTLES = {"ThrottlingException", "ModelNotReadyException", "ServiceQuotaExceededException"}


class BedrockInvoker:
    def __init__(self, read_timeout: int = 150, max_attempts: int = 3, runtime=None, region: str = ""):
        self._runtime = runtime
        self.region = region
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts

    @property
    def runtime(self):
        if self._runtime is None:
            runtime = client("bedrock-runtime", read_timeout=self.read_timeout, max_attempts=self.max_attempts,
                             region=self.region or None)
            # Count every throttled attempt, also those botocore retries successfully (the quota signal).
            runtime.meta.events.register_first("needs-retry.bedrock-runtime.InvokeModel", self._on_attempt)
            self._runtime = runtime
        return self._runtime

    def _on_attempt(self, response=None, **_) -> None:
        code = (response[1].get("Error", {}).get("Code") if response and isinstance(response[1], dict) else None)
        if code in _THROTTLES:
            metrics.add_metric(BEDROCK_THROTTLES, MetricUnit.Count, 1)

    @tracer.capture_method(capture_response=False)
    def invoke(self, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
        runtime = self.runtime
        started = time.perf_counter()
        try:
            response = runtime.invoke_model(modelId=model_id, body=json.dumps(body),
                                            contentType="application/json", accept="application/json")
            payload = json.loads(response["body"].read())
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc, model_id) from None
        except ValueError:
            raise transient("model_error", f"{model_id} answered with a body that is not JSON") from None
        finally:
            metrics.add_metric(BEDROCK_LATENCY, MetricUnit.Milliseconds, (time.perf_counter() - started) * 1000)
        if not isinstance(payload, dict):
            raise transient("model_error", f"{model_id} answered with a JSON {type(payload).__name__}, not an object")
        return payload
