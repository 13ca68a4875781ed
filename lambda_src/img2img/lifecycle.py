"""Will every configured model still answer tomorrow? Pure checks: facts in, problems with advice out.

Bedrock's image models churn (SDXL 0.8/1.0, SD3 Large, Titan Image, Nova Canvas: all gone), and a Legacy
model stops answering accounts that have not used it recently. The scheduled check
(handlers/lifecycle_check.py) and `img2img doctor` gather the facts (aws/lifecycle.py: GetFoundationModel
-> modelLifecycle, ListInferenceProfiles, Service Quotas, a non-billed invoke probe) and ask `check` what
is wrong. No boto3 here: every rule is testable with plain values.

Also the one home of what Bedrock's retirement answers look like (`is_retirement`) and of which model to
move to (`SUCCESSORS`), which the worker's error mapping (aws/bedrock.py) names in `model_retired`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date

SD35_LARGE = "stability.sd3-5-large-v1:0"
SDXL_V1 = "stability.stable-diffusion-xl-v1"

# A retired or retiring model -> the model to move to (same request style or a documented mapping:
# docs/parameters.md maps SDXL's fields to SD3.5's). A model not listed has no known successor.
SUCCESSORS: dict[str, str] = {
    SDXL_V1: SD35_LARGE,
    "stability.stable-diffusion-xl-v0": SD35_LARGE,
    "stability.sd3-large-v1:0": SD35_LARGE,
}
# Models this project keeps configured although Bedrock retired them (SDXL 1.0, the documented
# contract: infra/regions.END_OF_LIFE): reported, never alarmed.
KNOWN_RETIRED: frozenset[str] = frozenset({SDXL_V1})

NEAR_END_OF_LIFE_DAYS = 90
# The quota check assumes one call per slot every this many seconds: SD3.5 and most Image Services
# answer in 5-30 s, so 10 s is the pessimistic side (Fast Upscale, ~1 s, needs more).
SECONDS_PER_CALL = 10

# Bedrock's answers that mean "this model is gone for you" (404 and 400/403 seen): end of life, and
# the Legacy inactivity refusal ("This Model is marked by provider as Legacy and you have not been
# actively using the model in the last 30 days. Please upgrade to an active model on Amazon Bedrock.").
RETIREMENT_PHRASES = ("reached the end of its life", "marked by provider as legacy")

ERROR, WARNING, INFO = "error", "warning", "info"
# Problem kinds: one metric each (handlers/lifecycle_check.py). Those that are errors alarm and fail
# `img2img doctor`: the model is gone, going within 90 days, or cannot be called.
LEGACY = "legacy"
END_OF_LIFE_SOON = "end_of_life_soon"          # within NEAR_END_OF_LIFE_DAYS
END_OF_LIFE_SCHEDULED = "end_of_life_scheduled"  # a date further out
RETIRED = "retired"
NOT_IN_REGION = "not_in_region"
NOT_INVOCABLE = "not_invocable"
QUOTA_TOO_SMALL = "quota_too_small"
UNCHECKED = "unchecked"
SEVERITY: dict[str, str] = {
    RETIRED: ERROR, LEGACY: ERROR, END_OF_LIFE_SOON: ERROR, NOT_IN_REGION: ERROR, NOT_INVOCABLE: ERROR,
    END_OF_LIFE_SCHEDULED: WARNING, QUOTA_TOO_SMALL: WARNING, UNCHECKED: WARNING,
}
KINDS = tuple(SEVERITY)
ALARMED_KINDS = tuple(kind for kind, severity in SEVERITY.items() if severity == ERROR)
# Probe outcomes (aws/lifecycle.py's non-billed InvokeModel).
INVOCABLE, DENIED, GONE, UNKNOWN = "invocable", "denied", "retired", "unknown"


def is_retirement(message: str) -> bool:
    """Does this Bedrock error message say the model was retired (end of life, or Legacy inactivity)?"""
    lowered = (message or "").lower()
    return any(phrase in lowered for phrase in RETIREMENT_PHRASES)


PROFILE_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "jp", "au", "ca")


def base_model(model_id: str) -> str:
    """`us.stability.x-v1:0` -> `stability.x-v1:0`; an ARN -> its last path part."""
    if model_id.startswith("arn:"):
        return model_id.rsplit("/", 1)[-1]
    prefix, _, rest = model_id.partition(".")
    return rest if prefix in PROFILE_PREFIXES and rest else model_id


def is_profile(model_id: str) -> bool:
    return model_id.partition(".")[0] in PROFILE_PREFIXES and base_model(model_id) != model_id


def replacement_for(model_id: str) -> str | None:
    """The model to move to, in the caller's form (a `us.` profile stays a profile)."""
    successor = SUCCESSORS.get(base_model(model_id))
    if successor is None:
        return None
    prefix = model_id.partition(".")[0] if is_profile(model_id) else ""
    return f"{prefix}.{successor}" if prefix else successor


def move_advice(model_id: str) -> str:
    replacement = replacement_for(model_id)
    if replacement:
        return (f"move to {replacement} (set it as modelId or as the operation's model in cdk.json, then "
                f"deploy; jobs naming {model_id} in model_id must change too)")
    return ("no successor is known to this project: pick an ACTIVE model for this operation "
            "(`aws bedrock list-foundation-models --by-output-modality IMAGE`) or disable the operation")


@dataclass(frozen=True)
class Quota:
    code: str
    name: str
    value: float


@dataclass(frozen=True)
class ModelFacts:
    """What AWS says about one configured model id (None: could not be found out)."""

    model_id: str
    operations: tuple[str, ...] = ()
    found: bool = True                 # GetFoundationModel answered (False: not offered in this region)
    status: str | None = None          # modelLifecycle.status: ACTIVE or LEGACY
    legacy_date: date | None = None
    end_of_life_date: date | None = None
    model_name: str = ""
    served_regions: tuple[str, ...] | None = None   # where a profile routes to (None: not a profile / unknown)
    probe: str = UNKNOWN               # INVOCABLE, DENIED, GONE, UNKNOWN
    probe_message: str = ""
    quotas: tuple[Quota, ...] = ()     # the requests-per-minute quotas that apply to this model
    errors: tuple[str, ...] = ()       # facts that could not be read, and why


@dataclass(frozen=True)
class Problem:
    model_id: str
    kind: str
    severity: str
    detail: str
    advice: str
    operations: tuple[str, ...] = ()

    @property
    def alarms(self) -> bool:
        return self.severity == ERROR

    def as_event(self) -> dict:
        return {**asdict(self), "operations": list(self.operations)}


@dataclass(frozen=True)
class Plan:
    """What to check: the configured models (with the operations that use them), the Bedrock region,
    the in-flight ceiling, and where each model is offered (infra/regions.py, for the advice)."""

    region: str
    models: Mapping[str, tuple[str, ...]]             # model id -> operations using it
    concurrency: int
    offered_in: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    ENV = "IMG2IMG_LIFECYCLE_PLAN"

    def to_env(self) -> dict[str, str]:
        return {self.ENV: json.dumps({"region": self.region, "concurrency": self.concurrency,
                                      "models": {m: list(o) for m, o in self.models.items()},
                                      "offered_in": {m: list(r) for m, r in self.offered_in.items()}},
                                     sort_keys=True)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Plan:
        raw = json.loads(environ[cls.ENV])
        return cls(region=raw["region"], concurrency=int(raw["concurrency"]),
                   models={m: tuple(o) for m, o in raw["models"].items()},
                   offered_in={m: tuple(r) for m, r in raw.get("offered_in", {}).items()})


def model_plan(model_ids: Iterable[str], operations: Mapping[str, str], image_to_image: str) -> dict:
    """model id -> the operations that reach it (image-to-image's models listed first)."""
    plan: dict[str, list[str]] = {}
    for model_id in model_ids:
        plan.setdefault(model_id, [])
    for model_id in plan:
        if model_id not in operations.values():
            plan[model_id].append(image_to_image)
    for name, model_id in operations.items():
        plan.setdefault(model_id, []).append(name)
    return {m: tuple(o) for m, o in plan.items()}


def required_rpm(concurrency: int, seconds_per_call: float = SECONDS_PER_CALL) -> int:
    """Requests per minute `concurrency` slots can send, each call taking `seconds_per_call`."""
    return math.ceil(concurrency * 60 / seconds_per_call)


def check(facts: Iterable[ModelFacts], plan: Plan, today: date) -> list[Problem]:
    """Every problem of every configured model, most severe first."""
    problems = [p for f in facts for p in _check_one(f, plan, today)]
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    return sorted(problems, key=lambda p: (order[p.severity], p.model_id, KINDS.index(p.kind)))


def _check_one(f: ModelFacts, plan: Plan, today: date) -> list[Problem]:
    out: list[Problem] = []
    known = base_model(f.model_id) in KNOWN_RETIRED

    def add(kind: str, detail: str, advice: str) -> None:
        severity = SEVERITY[kind]
        if known and severity == ERROR:
            severity = INFO  # kept on purpose as the documented contract: say so, never alarm
            advice = f"kept as the documented contract; jobs that select it fail with model_retired. {advice}"
        out.append(Problem(f.model_id, kind, severity, detail, advice, f.operations))

    if f.probe == GONE or (f.end_of_life_date is not None and f.end_of_life_date <= today):
        when = f" on {f.end_of_life_date}" if f.end_of_life_date else ""
        add(RETIRED, f"Bedrock retired it{when}: {f.probe_message or 'end of life'}", move_advice(f.model_id))
        return out
    if not f.found:
        offered = plan.offered_in.get(f.model_id) or plan.offered_in.get(base_model(f.model_id))
        where = f"; offered in {', '.join(offered)}" if offered else ""
        add(NOT_IN_REGION, f"Bedrock in {plan.region} does not know it (GetFoundationModel){where}",
            (f"set bedrockRegion={offered[0]}, or " if offered else "") + move_advice(f.model_id))
    if f.served_regions is not None and not f.served_regions:
        add(NOT_IN_REGION, f"no inference profile {f.model_id} in {plan.region}",
            f"use a profile {plan.region} offers (`aws bedrock list-inference-profiles`), or {move_advice(f.model_id)}")
    if f.status == "LEGACY":
        since = f" since {f.legacy_date}" if f.legacy_date else ""
        eol = f", end of life {f.end_of_life_date}" if f.end_of_life_date else ""
        add(LEGACY, f"Legacy{since}{eol}: accounts that stop using it lose access", move_advice(f.model_id))
    elif f.end_of_life_date is not None:
        days = (f.end_of_life_date - today).days
        add(END_OF_LIFE_SOON if days <= NEAR_END_OF_LIFE_DAYS else END_OF_LIFE_SCHEDULED,
            f"end of life {f.end_of_life_date} ({days} days)", move_advice(f.model_id))
    if f.probe == DENIED:
        add(NOT_INVOCABLE, f"this account may not invoke it: {f.probe_message}",
            "request model access in the Bedrock console (Model access) for this account and region, and check "
            "that the role may bedrock:InvokeModel on it")
    need = required_rpm(plan.concurrency)
    for quota in f.quotas:
        if quota.value < need:
            add(QUOTA_TOO_SMALL,
                f"quota {quota.name} ({quota.code}) is {quota.value:g} requests/minute; {plan.concurrency} calls "
                f"in flight at one call per {SECONDS_PER_CALL} s send {need}",
                f"request an increase of {quota.code} to at least {need} (+{need - quota.value:g}) in Service "
                f"Quotas ({plan.region}), or lower bedrockMaxConcurrency to "
                f"{max(1, int(quota.value * SECONDS_PER_CALL // 60))}")
    for error in f.errors:
        add(UNCHECKED, error, "an AccessDenied: grant the caller what docs/deploy.md lists; anything else: run "
            "the check again later")
    return out


def exit_status(problems: Iterable[Problem]) -> int:
    """What `img2img doctor` exits with: 1 if anything would alarm, else 0."""
    return 1 if any(p.alarms for p in problems) else 0


def counts(problems: Iterable[Problem]) -> dict[str, int]:
    """Problems per kind, every kind present (0 included, so alarms see data and recover); a known
    retired model kept on purpose (INFO) is not counted."""
    found = dict.fromkeys(KINDS, 0)
    for p in problems:
        if p.severity != INFO:
            found[p.kind] += 1
    return found


def matching_quotas(model_id: str, model_name: str, quotas: Iterable[Quota]) -> tuple[Quota, ...]:
    """The requests-per-minute quotas of one model among Bedrock's (ListServiceQuotas ServiceCode=bedrock).

    Bedrock names them "On-demand model inference requests per minute for <model name>" and, for
    inference profiles, "Cross-region model inference requests per minute for <model name>"."""
    if not model_name:
        return ()
    wanted = "cross-region" if is_profile(model_id) else "on-demand"
    name = model_name.lower()
    return tuple(q for q in quotas if "requests per minute" in q.name.lower() and name in q.name.lower()
                 and q.name.lower().startswith(wanted))


# The metric each kind is counted in (handlers/lifecycle_check.py publishes, infra/monitoring.py alarms).
METRICS: dict[str, str] = {kind: "ModelLifecycle" + "".join(w.capitalize() for w in kind.split("_"))
                           for kind in KINDS}
EVENT_DETAIL_TYPE = "ModelLifecycleProblem"
