"""Per-model request budgets shared by every sandbox: the decisions, with no I/O (aws/quota.py stores them).

Bedrock's quotas are per model and per account, so a sandbox cannot pace itself from what it sees alone
(docs/performance.md §3: local back-off either overshot or under-filled). Every attempt at a model call
therefore takes a ticket from one shared counter per model and short window:

- **Fixed windows with a counter, one write per attempt.** The item `<model>#<window>` gets `ADD n 1`
  (returning the new `n`, TTL'd); the attempt is admitted when its `n` is within the window's budget. The
  counter is atomic, so no interleaving admits more than the budget in a window. Refused attempts count
  too: their position past the budget says how many are queued ahead of them, so each gets its own return
  time (`decide`) and a burst comes back spread out rather than all at the next window. A token bucket with
  conditional writes needs a read and a conditional write per attempt (two round trips, and a failed
  condition under contention costs a retry loop); leases need a release (a crashed sandbox strands its
  slot until the TTL). A rate limiter has nothing to release: a crashed caller's ticket only spends one
  slot of one window, which a failed model call would have spent too.
- **Short windows, paced for a sliding minute** (`WINDOW_SECONDS` = 1): the offline engine counts
  requests per minute over a moving 60 s span (Bedrock's own accounting is not published, so assume the
  same), and any 60 s span touches 60/W + 1 fixed windows. So each window's budget is
  the rate `rpm x W / (60 + W)` (`paced_rpm`): no 60 s span can be given more than the quota, at a cost of
  W/(60 + W) of it (1.6 % with 1 s windows; measured with 5 s windows and no such margin, the 13th window
  of a span overshot the engine's sliding quota: 7 throttles in 90 calls and 0.84 of the quota after the
  AIMD decrease). A fractional per-window budget is spread by cumulative floors (`window_budget`).
- **Clock skew.** Windows are computed from the caller's clock. Lambda sandboxes' clocks are kept in
  sync by AWS (normally well under a window apart); a caller off by `d` seconds spends its window's
  shared budget up to `d` early or late, so the excess in any span is bounded by the budget of
  `d / WINDOW_SECONDS + 1` windows. It never breaks the per-window bound, which the shared counter
  enforces.
- **AIMD.** A throttle from Bedrock means the configured rate is above the account's real one (a daily
  cap, another consumer): the model's effective rate drops by `DECREASE` (at most once per `COOLDOWN`, so
  one burst of throttled in-flight calls counts once), and after `QUIET` seconds without a throttle it
  climbs back by `INCREASE` of the configured rate every `STEP` seconds. The state is one shared item, so
  every sandbox paces to the same rate.

Known limit: a refused ticket knows its place among this window's attempts, not the whole backlog. A
job that comes back late (the queue's delivery lag) leaves its window unused and lands in a window meant
for another; the one that loses takes a new ticket, one window on. The jobs still arrive, and no call is
made without a slot, but each job may be sent back a few times and a burst runs below the quota (bench/
quota.py). Carrying the reserved window in the requeued message, so that a returning job holds its
slot, would remove both.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import JobError, transient

DEFAULT_KEY = "default"   # in the model -> rpm configuration: the budget of every model not listed
WINDOW_SECONDS = 1
MAX_DELAY_SECONDS = 900   # SQS's longest message delay; a job further back takes a new ticket then
DECREASE = 0.75           # effective rate x this on a throttle
FLOOR = 0.1               # ... but never below this share of the configured rate (and 1/min)
COOLDOWN = 10.0           # seconds: throttles within this of the last decrease do not lower it again
QUIET = 30.0              # seconds without a throttle before the rate climbs back
STEP = 10.0               # seconds per increase
INCREASE = 0.05           # share of the configured rate added per step
THROTTLE_CAUSES = ("throttled", "quota_exceeded")  # the transient causes that say Bedrock's quota was hit

T = TypeVar("T")


class QuotaConfigError(ValueError):
    """The model -> requests-per-minute configuration is malformed."""


@dataclass(frozen=True)
class Budgets:
    """Requests per minute per model id; `default` for every model not listed (None: not limited)."""

    rpm: Mapping[str, int]
    default: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Budgets:
        bad = sorted(str(k) for k, v in config.items()
                     if not isinstance(v, int) or isinstance(v, bool) or v < 1)
        if bad:
            raise QuotaConfigError(f"requests per minute must be integers >= 1; not so for {bad}")
        rpm = {k: v for k, v in config.items() if k != DEFAULT_KEY}
        return cls(rpm, config.get(DEFAULT_KEY))

    def rpm_for(self, model_id: str) -> int | None:
        return self.rpm.get(model_id, self.default)


def window_of(now: float, seconds: float = WINDOW_SECONDS) -> int:
    return math.floor(now / seconds)


def paced_rpm(rpm: float, seconds: float = WINDOW_SECONDS) -> float:
    """The rate the windows share out: no 60 s span, which touches 60/W + 1 windows, gets more than `rpm`."""
    return rpm * 60 / (60 + seconds)


def window_budget(rpm: float, window: int, seconds: float = WINDOW_SECONDS) -> int:
    """Admissions in `window`: cumulative floors of the paced rate, so fractional budgets add up."""
    per = paced_rpm(rpm, seconds) * seconds / 60
    return _admitted_by(per, window + 1) - _admitted_by(per, window)


def _admitted_by(per: float, windows: int) -> int:
    """Admissions in all windows before `windows` (the nudge keeps 7/61 x 61 from flooring to 6)."""
    return math.floor(per * windows + 1e-9)


def decide(count: int, rpm: float, now: float, jitter: float = 0.0, seconds: float = WINDOW_SECONDS) -> int:
    """Seconds to wait for the attempt holding ticket `count` (1-based) of the window at `now`: 0 admits it.

    A refused ticket `excess` places past the budget waits for the first later window whose budgets,
    added up, cover its place in line. Delays are whole seconds (SQS's); `jitter` in [0, 1) spreads
    them over that window without leaving it."""
    window = window_of(now, seconds)
    excess = count - window_budget(rpm, window, seconds)
    if excess <= 0:
        return 0
    per = paced_rpm(rpm, seconds) * seconds / 60
    target = window + 1  # the first later window whose budgets, added up, cover its place in line
    target = max(target, math.ceil((_admitted_by(per, window + 1) + excess - 1e-9) / per) - 1)
    while _admitted_by(per, target + 1) - _admitted_by(per, window + 1) < excess:
        target += 1
    start = target * seconds
    return max(1, min(MAX_DELAY_SECONDS, math.ceil(start - now + jitter * max(0.0, seconds - 1))))


@dataclass(frozen=True)
class Rate:
    """A model's shared AIMD state: the effective rate set at its last decrease, and when."""

    rpm: float
    since: float


def floor_rpm(configured: float) -> float:
    return max(1.0, configured * FLOOR)


def effective_rpm(configured: float, state: Rate | None, now: float) -> float:
    """The rate to pace to now: the last decrease, plus the increases earned by quiet time since."""
    if state is None:
        return configured
    quiet = now - state.since - QUIET
    steps = math.floor(quiet / STEP) + 1 if quiet >= 0 else 0
    return max(floor_rpm(configured), min(configured, state.rpm + steps * INCREASE * configured))


def lowered(configured: float, state: Rate | None, now: float) -> Rate | None:
    """The state after a throttle at `now`, or None within `COOLDOWN` of the last decrease."""
    if state is not None and now - state.since < COOLDOWN:
        return None
    return Rate(max(floor_rpm(configured), effective_rpm(configured, state, now) * DECREASE), now)


def within_quota(limiter: Any, model_id: str, call: Callable[[], T]) -> T:
    """`call()` (the model invocation) once `limiter` (a core.ports.QuotaLimiter) admits it.

    No slot: the transient `quota_wait`, carrying `retry_after` seconds, and no model call. A throttle
    from the call lowers the model's shared rate before it propagates. No limiter: just the call."""
    if limiter is None:
        return call()
    wait = limiter.acquire(model_id)
    if wait > 0:
        raise transient("quota_wait", f"{model_id} has no request left in this deployment's quota for now; "
                        f"the job comes back in {wait} s", retry_after=wait)
    try:
        return call()
    except JobError as exc:
        if exc.code in THROTTLE_CAUSES:
            limiter.throttled(model_id)
        raise
