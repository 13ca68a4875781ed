"""The `bedrock` control plane the lifecycle check reads: GetFoundationModel, ListFoundationModels and
ListInferenceProfiles, answered from a lifecycle table tests change at run time.

Every model the engine serves is ACTIVE everywhere unless `EngineConfig.lifecycle` says otherwise, per
model id: `{"status": "ACTIVE" | "LEGACY" | "END_OF_LIFE", "legacyTime": "2026-01-31",
"endOfLifeTime": "2026-06-30", "regions": ["us-west-2"], "inactive": true}`. END_OF_LIFE (or
`eol_models`) answers every call with Bedrock's end-of-life 404; `inactive` on a LEGACY model makes
invocations answer the Legacy inactivity refusal; `regions` limits where the control plane lists it
(the caller's region comes from its SigV4 credential scope). Change it with
`POST /_engine/config {"lifecycle": {...}}` or `EngineServer.configure(lifecycle=...)`.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from img2img.operations import BY_MODEL, PROFILE_GEOGRAPHY, PROFILE_REGIONS

from .converse import TEXT_MODELS
from .faults import EOL_MESSAGE, EngineConfig
from .validation import SD35, SDXL

STATUSES = ("ACTIVE", "LEGACY", "END_OF_LIFE")
KEYS = ("status", "legacyTime", "endOfLifeTime", "regions", "inactive")
LEGACY_MESSAGE = ("Access denied. This Model is marked by provider as Legacy and you have not been actively "
                  "using the model in the last 30 days. Please upgrade to an active model on Amazon Bedrock.")
NAMES = {SDXL: "SDXL 1.0", SD35: "Stable Diffusion 3.5 Large",
         **{model: f"Stable Image {op.title}" for model, op in BY_MODEL.items()}, **TEXT_MODELS}
# Every model the control plane knows, image models first.
SERVED = (SDXL, SD35, *BY_MODEL, *TEXT_MODELS)
ACCOUNT = "123456789012"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")


def validate(lifecycle: Any) -> dict[str, dict]:
    """The `lifecycle` config as plain dicts, or ValueError naming what is wrong."""
    if not isinstance(lifecycle, Mapping):
        raise ValueError(f"lifecycle must be an object model id -> entry, got {lifecycle!r}")
    out: dict[str, dict] = {}
    for model, entry in lifecycle.items():
        if not isinstance(entry, Mapping) or set(entry) - set(KEYS):
            raise ValueError(f"lifecycle[{model}] must be an object with keys among {', '.join(KEYS)}")
        if entry.get("status", "ACTIVE") not in STATUSES:
            raise ValueError(f"lifecycle[{model}].status must be one of {', '.join(STATUSES)}")
        regions = entry.get("regions")
        if regions is not None and (isinstance(regions, str) or not all(isinstance(r, str) for r in regions)):
            raise ValueError(f"lifecycle[{model}].regions must be a list of region names")
        out[str(model)] = {**entry, **({"regions": list(regions)} if regions is not None else {})}
    return out


def region_of(headers: Mapping[str, str]) -> str:
    """The region a SigV4-signed request was signed for ('' when unsigned)."""
    match = _SCOPE.search(headers.get("authorization", ""))
    return match.group(1) if match else ""


class ControlPlane:
    """Answers for one EngineConfig: (status, JSON body) or raises via `refuse`."""

    def __init__(self, config: EngineConfig, region: str) -> None:
        self.config, self.region = config, region

    def entry(self, model: str) -> dict:
        return dict(self.config.lifecycle.get(model) or {})

    def retired(self, model: str) -> bool:
        return self.entry(model).get("status") == "END_OF_LIFE" or model in self.config.eol_models

    def listed(self, model: str) -> bool:
        regions = self.entry(model).get("regions")
        return not self.retired(model) and (regions is None or not self.region or self.region in regions)

    def details(self, model: str) -> dict:
        entry = self.entry(model)
        life: dict[str, Any] = {"status": entry.get("status", "ACTIVE")}
        for key in ("legacyTime", "endOfLifeTime"):
            if entry.get(key):
                life[key] = _timestamp(entry[key])
        text = model in TEXT_MODELS
        return {"modelArn": f"arn:aws:bedrock:{self.region or 'us-east-1'}::foundation-model/{model}",
                "modelId": model, "modelName": NAMES[model], "providerName": "Amazon" if text else "Stability AI",
                "inputModalities": ["TEXT"] if text else ["TEXT", "IMAGE"],
                "outputModalities": ["TEXT"] if text else ["IMAGE"],
                "inferenceTypesSupported": ["INFERENCE_PROFILE" if model in BY_MODEL or text else "ON_DEMAND"],
                "modelLifecycle": life}

    def profiles(self) -> list[dict]:
        out = []
        for model in (SDXL, SD35, *BY_MODEL, *TEXT_MODELS):
            if self.retired(model):
                continue
            regions = [r for r in PROFILE_REGIONS if r in (self.entry(model).get("regions") or PROFILE_REGIONS)]
            if not regions:
                continue
            profile = f"{PROFILE_GEOGRAPHY}.{model}"
            out.append({"inferenceProfileName": f"US {NAMES[model]}", "inferenceProfileId": profile,
                        "inferenceProfileArn": f"arn:aws:bedrock:{self.region or 'us-east-1'}:{ACCOUNT}:"
                                               f"inference-profile/{profile}",
                        "models": [{"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{model}"} for r in regions],
                        "status": "ACTIVE", "type": "SYSTEM_DEFINED"})
        return out

    def refusal(self, model: str) -> str | None:
        """The message an invocation of this model is refused with, if any."""
        if self.retired(model):
            return EOL_MESSAGE
        entry = self.entry(model)
        if entry.get("status") == "LEGACY" and entry.get("inactive"):
            return LEGACY_MESSAGE
        return None


def _timestamp(value: str) -> str:
    return value if "T" in value else f"{value}T00:00:00Z"
