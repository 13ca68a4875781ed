"""The facts img2img/lifecycle.py checks, read from AWS with the caller's credentials. Read-only, not billed.

Per configured model id: `bedrock:GetFoundationModel` (its modelLifecycle and name, in the Bedrock region;
not found there means not offered there), the regions its inference profile routes to
(`bedrock:ListInferenceProfiles`, one call for all), whether this account may invoke it (the probe
below), and its requests-per-minute quotas (`servicequotas:ListServiceQuotas`, service code `bedrock`,
matched by model name: the image models' quota codes are not published, so they cannot be asked for
one by one with GetServiceQuota).

The authorisation probe is `InvokeModel` with the body `{}`. Bedrock checks IAM, model access and the
model's lifecycle before it reads the body, so the answers sort cleanly: ValidationException (the body
is wrong: we are authorised and the model answers), AccessDeniedException (no model access, or IAM
denies), and the retirement answers (end of life, or Legacy unused by this account), which only an
invoke reveals. A rejected body is never billed and never reaches the model. The alternatives say less:
GetFoundationModelAvailability reports the account's entitlement but not the Legacy inactivity refusal,
and IAM policy simulation knows nothing of model access.
"""
from __future__ import annotations

from datetime import date, datetime

from botocore.exceptions import BotoCoreError, ClientError

from ..lifecycle import (
    DENIED,
    GONE,
    INVOCABLE,
    UNKNOWN,
    ModelFacts,
    Plan,
    Quota,
    base_model,
    is_profile,
    is_retirement,
    matching_quotas,
)
from .clients import client

PROBE_BODY = b"{}"
QUOTA_SERVICE_CODE = "bedrock"
_NOT_FOUND = ("ResourceNotFoundException", "ValidationException")


def _error(exc: Exception) -> tuple[str, str]:
    """An error's code and the first line of its message (some endpoints answer 5xx with an HTML page)."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, message = err.get("Code", ""), err.get("Message", "") or str(exc)
    else:
        code, message = type(exc).__name__, str(exc)
    return code, " ".join(message.split())[:200]


def _day(value) -> date | None:
    return value.date() if isinstance(value, datetime) else value if isinstance(value, date) else None


class LifecycleReader:
    """Reads ModelFacts for a Plan. Clients are injectable (tests: moto, Stubber, the offline engine)."""

    def __init__(self, region: str, *, bedrock=None, runtime=None, quotas=None) -> None:
        self.region = region
        self.bedrock = bedrock or client("bedrock", region=region or None)
        self.runtime = runtime or client("bedrock-runtime", read_timeout=30, max_attempts=2, region=region or None)
        self.quotas = quotas or client("service-quotas", region=region or None)

    def facts(self, plan: Plan) -> list[ModelFacts]:
        profiles, profile_error = self._profiles() if any(map(is_profile, plan.models)) else ({}, "")
        quotas, quota_error = self._quotas()
        out = []
        for index, model_id in enumerate(plan.models):
            operations = plan.models[model_id]
            # A failed list is one fact, reported once (on the first model), not once per model.
            errors = [e for e in (profile_error if is_profile(model_id) else "", "" if index else quota_error) if e]
            facts = self._model(model_id, operations, errors)
            served = profiles.get(model_id, ()) if is_profile(model_id) and not profile_error else None
            out.append(ModelFacts(**{**facts, "served_regions": served, "errors": tuple(errors),
                                     "quotas": matching_quotas(model_id, facts.get("model_name", ""), quotas)}))
        return out

    def _model(self, model_id: str, operations: tuple[str, ...], errors: list[str]) -> dict:
        facts: dict = {"model_id": model_id, "operations": tuple(operations)}
        if model_id.startswith("arn:"):
            facts["found"] = True  # an ARN names its own region and resource: only the probe applies
        else:
            try:
                details = self.bedrock.get_foundation_model(modelIdentifier=base_model(model_id))["modelDetails"]
                life = details.get("modelLifecycle") or {}
                facts.update(found=True, status=life.get("status"), model_name=details.get("modelName", ""),
                             legacy_date=_day(life.get("legacyTime")), end_of_life_date=_day(life.get("endOfLifeTime")))
            except (ClientError, BotoCoreError) as exc:
                code, message = _error(exc)
                if is_retirement(message):
                    facts.update(found=True, probe=GONE, probe_message=message)
                    return facts
                if code in _NOT_FOUND:
                    facts["found"] = False
                else:
                    errors.append(f"GetFoundationModel: {code}: {message}")
        facts.update(zip(("probe", "probe_message"), self.probe(model_id, errors)))
        return facts

    def probe(self, model_id: str, errors: list[str]) -> tuple[str, str]:
        """Can this account invoke the model? (see the module docstring: a body Bedrock rejects unbilled)"""
        try:
            self.runtime.invoke_model(modelId=model_id, body=PROBE_BODY, contentType="application/json",
                                      accept="application/json")
            return INVOCABLE, ""
        except (ClientError, BotoCoreError) as exc:
            code, message = _error(exc)
        if is_retirement(message):
            return GONE, message
        if code == "ValidationException":
            return INVOCABLE, ""
        if code == "AccessDeniedException":
            return DENIED, message
        if code != "ResourceNotFoundException":  # not found is GetFoundationModel's to report
            errors.append(f"InvokeModel probe: {code}: {message}")
        return UNKNOWN, message

    def _profiles(self) -> tuple[dict[str, tuple[str, ...]], str]:
        """inference-profile id -> the regions its models are in (from their ARNs)."""
        found: dict[str, tuple[str, ...]] = {}
        try:
            for page in self.bedrock.get_paginator("list_inference_profiles").paginate():
                for summary in page.get("inferenceProfileSummaries", []):
                    regions = (m["modelArn"].split(":")[3] for m in summary.get("models", []))
                    found[summary["inferenceProfileId"]] = tuple(dict.fromkeys(r for r in regions if r))
        except (ClientError, BotoCoreError) as exc:
            return {}, "ListInferenceProfiles: {}: {}".format(*_error(exc))
        return found, ""

    def _quotas(self) -> tuple[list[Quota], str]:
        try:
            pages = self.quotas.get_paginator("list_service_quotas").paginate(ServiceCode=QUOTA_SERVICE_CODE)
            return [Quota(q["QuotaCode"], q["QuotaName"], float(q["Value"])) for page in pages
                    for q in page.get("Quotas", []) if "Value" in q], ""
        except (ClientError, BotoCoreError) as exc:
            code, message = _error(exc)
            if code == "NoSuchResourceException":  # no quotas listed for the service here: nothing to compare
                return [], ""
            return [], f"ListServiceQuotas: {code}: {message}"


def read_facts(plan: Plan, **clients) -> list[ModelFacts]:
    return LifecycleReader(plan.region, **clients).facts(plan)
