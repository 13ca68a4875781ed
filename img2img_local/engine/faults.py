"""Fault injection for the offline engine: configuration, quota limiter, error draws and counters.

Everything that makes the engine misbehave on purpose lives here, so the HTTP layer only asks
"may this request proceed, and how late?" and the pipeline can be tested against Bedrock's bad days.
"""
from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# name -> (HTTP status, the message Bedrock sends). Order matters for cumulative error-rate draws.
ERRORS: dict[str, tuple[int, str]] = {
    "ValidationException": (400, "The input fails to satisfy the constraints specified by the model."),
    "ServiceQuotaExceededException": (
        400,
        "Your request exceeds the service quota for your account. You can view your quotas at "
        "https://docs.aws.amazon.com/servicequotas/latest/userguide/gs-request-quota.html. "
        "You can resubmit your request later.",
    ),
    "AccessDeniedException": (403, "You don't have access to the model with the specified model ID."),
    "ResourceNotFoundException": (404, "The requested resource could not be found."),
    "ModelTimeoutException": (408, "Model has timed out in processing the request. Try your request again."),
    "ModelErrorException": (424, "The model returned an error. Try your request again."),
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
    "ModelNotReadyException": (
        429,
        "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation. "
        "If you continue to see this error, check that the model is ready.",
    ),
    "InternalServerException": (500, "The server encountered an internal error while processing the request."),
    "ServiceUnavailableException": (503, "The service isn't currently available. Try again later."),
}

EOL_MESSAGE = ("This model version has reached the end of its life. "
               "Please refer to the AWS documentation for more details.")
THROTTLED_MESSAGE = ERRORS["ThrottlingException"][1]
# z-score of the 95th percentile of a standard normal, for the lognormal latency fit.
_Z95 = 1.6448536269514722


class ConfigError(ValueError):
    """A configuration change that would leave the engine in a meaningless state."""


@dataclass(frozen=True)
class EngineConfig:
    """How the engine misbehaves. Immutable: changes go through `dataclasses.replace` (see `merged`).

    Latency = latency_ms + uniform(0, jitter_ms) + lognormal(mean, p95) when both lognormal knobs are > 0,
    plus `model_latency_ms[model]` for that model. `requests_per_minute` and `max_concurrent` are
    engine-wide, like one account's quota; `model_requests_per_minute` adds a quota per model (Bedrock's
    are per model), keyed by the foundation model id the request resolves to (a `us.` profile counts as
    its model). `seed` makes fault draws and random image seeds reproducible across runs.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    lognormal_mean_ms: float = 0.0
    lognormal_p95_ms: float = 0.0
    requests_per_minute: int | None = None
    max_concurrent: int | None = None
    model_requests_per_minute: Mapping[str, int] = field(default_factory=dict)
    model_latency_ms: Mapping[str, float] = field(default_factory=dict)
    error_rates: Mapping[str, float] = field(default_factory=dict)
    blocked_words: tuple[str, ...] = ()
    filter_words: tuple[str, ...] = ()
    eol_models: tuple[str, ...] = ()
    # model id -> its lifecycle on the control plane (control.py): status, dates, regions, inactivity.
    lifecycle: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", "lognormal_mean_ms", "lognormal_p95_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}")
        if (self.lognormal_mean_ms > 0) != (self.lognormal_p95_ms > 0):
            raise ConfigError("lognormal_mean_ms and lognormal_p95_ms must be set together")
        if self.lognormal_mean_ms > 0 and self.lognormal_p95_ms <= self.lognormal_mean_ms:
            raise ConfigError("lognormal_p95_ms must be greater than lognormal_mean_ms")
        for name in ("requests_per_minute", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or null, got {value!r}")
        self._check_per_model()
        rates = dict(self.error_rates or {})
        for name, rate in rates.items():
            if name not in ERRORS:
                raise ConfigError(f"error_rates: unknown error {name!r}; known: {', '.join(ERRORS)}")
            if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
                raise ConfigError(f"error_rates[{name}] must be between 0 and 1, got {rate!r}")
        if sum(rates.values()) > 1:
            raise ConfigError("error_rates must add up to at most 1")
        object.__setattr__(self, "error_rates", rates)
        for name in ("blocked_words", "filter_words", "eol_models"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must be a list of strings, got {value!r}")
            words = tuple(v.lower() for v in value) if name != "eol_models" else tuple(value)
            object.__setattr__(self, name, words)
        from .control import validate as validate_lifecycle  # control.py imports this module

        try:
            object.__setattr__(self, "lifecycle", validate_lifecycle(self.lifecycle))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise ConfigError(f"seed must be an integer or null, got {self.seed!r}")

    def _check_per_model(self) -> None:
        quotas = dict(self.model_requests_per_minute or {})
        for model, value in quotas.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model_requests_per_minute[{model}] must be a positive integer, got {value!r}")
        latencies = dict(self.model_latency_ms or {})
        for model, value in latencies.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"model_latency_ms[{model}] must be a number >= 0, got {value!r}")
        object.__setattr__(self, "model_requests_per_minute", quotas)
        object.__setattr__(self, "model_latency_ms", latencies)

    def merged(self, changes: Mapping[str, Any]) -> EngineConfig:
        """A copy with top-level keys replaced; unknown keys are an error, not silently ignored."""
        if not isinstance(changes, Mapping):
            raise ConfigError(f"config changes must be an object of key: value, got {changes!r}")
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "model_requests_per_minute": dict(self.model_requests_per_minute),
                "model_latency_ms": dict(self.model_latency_ms), "blocked_words": list(self.blocked_words),
                "filter_words": list(self.filter_words), "eol_models": list(self.eol_models)}


class FaultState:
    """The mutable side of fault injection: RNG, quota windows and counters, behind one lock."""

    def __init__(self, config: EngineConfig) -> None:
        self._lock = threading.Lock()
        self._initial = config
        self._install(config)

    def _install(self, config: EngineConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._admitted: deque[float] = deque()
        self._admitted_by_model: dict[str, deque[float]] = defaultdict(deque)
        self._in_flight = 0
        self._in_flight_peak = 0
        self._admitted_in_flight = 0
        self._total = 0
        self._outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def configure(self, changes: Mapping[str, Any]) -> EngineConfig:
        with self._lock:
            config = self.config.merged(changes)
            if "seed" in changes:
                self._rng = random.Random(config.seed)
            self.config = config
            return config

    def reset(self) -> None:
        """Back to the start-up config with zeroed counters and a fresh quota window."""
        with self._lock:
            self._install(self._initial)

    # --- request lifecycle -------------------------------------------------------------------------
    def enter(self) -> None:
        with self._lock:
            self._total += 1
            self._in_flight += 1
            self._in_flight_peak = max(self._in_flight_peak, self._in_flight)

    def leave(self, model: str, outcome: str) -> None:
        with self._lock:
            self._in_flight -= 1
            self._outcomes[model][outcome] += 1

    def admit(self, model: str | None = None) -> bool:
        """Apply the concurrency and requests-per-minute quotas (sliding 60 s windows of admitted requests):
        the engine-wide ones and, for `model`, its own. Only admitted requests hold a concurrency slot
        and count in a window; each True must be paired with `release()`."""
        with self._lock:
            config = self.config
            if config.max_concurrent is not None and self._admitted_in_flight >= config.max_concurrent:
                return False
            now = time.monotonic()
            windows = []
            if config.requests_per_minute is not None:
                windows.append((self._admitted, config.requests_per_minute))
            if model is not None and model in config.model_requests_per_minute:
                windows.append((self._admitted_by_model[model], config.model_requests_per_minute[model]))
            for window, limit in windows:
                while window and now - window[0] >= 60.0:
                    window.popleft()
                if len(window) >= limit:
                    return False
            for window, _ in windows:
                window.append(now)
            self._admitted_in_flight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._admitted_in_flight -= 1

    def latency_seconds(self, model: str | None = None) -> float:
        with self._lock:
            config, rng = self.config, self._rng
            millis = config.latency_ms + config.model_latency_ms.get(model or "", 0.0)
            if config.jitter_ms:
                millis += rng.uniform(0, config.jitter_ms)
            if config.lognormal_mean_ms:
                mu, sigma = _lognormal_params(config.lognormal_mean_ms, config.lognormal_p95_ms)
                millis += rng.lognormvariate(mu, sigma)
            return millis / 1000.0

    def draw_error(self) -> str | None:
        """One uniform draw against the cumulative error rates, so the rates are exact and exclusive."""
        with self._lock:
            if not self.config.error_rates:
                return None
            draw, cumulative = self._rng.random(), 0.0
            for name in ERRORS:
                cumulative += self.config.error_rates.get(name, 0.0)
                if draw < cumulative:
                    return name
            return None

    def random_seed(self, upper: int) -> int:
        """A nonzero seed for requests that asked for a random one (seed 0 or absent)."""
        with self._lock:
            return self._rng.randint(1, upper)

    def stats(self) -> dict:
        with self._lock:
            by_model = {model: dict(counts) for model, counts in self._outcomes.items()}
            by_outcome: dict[str, int] = defaultdict(int)
            for counts in by_model.values():
                for outcome, count in counts.items():
                    by_outcome[outcome] += count
            return {"total": self._total, "in_flight": self._in_flight, "in_flight_peak": self._in_flight_peak,
                    "by_outcome": dict(by_outcome), "by_model": by_model}


def _lognormal_params(mean: float, p95: float) -> tuple[float, float]:
    """mu, sigma of the lognormal with this mean and 95th percentile (sigma capped where no fit exists)."""
    # ln(p95) - ln(mean) = z*sigma - sigma^2/2  ->  smaller root of the quadratic in sigma.
    gap = math.log(p95 / mean)
    sigma = _Z95 - math.sqrt(max(_Z95 * _Z95 - 2 * gap, 0.0))
    return math.log(mean) - sigma * sigma / 2, sigma
