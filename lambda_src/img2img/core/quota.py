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
  cap, another consumer), or that delivery lag bunched a few calls at the edge of a sliding minute. One
  throttle after a quiet spell is taken for the latter: the rate stays and admissions pause for `NUDGE`
  seconds. Another within `RECENT` of that pause ending means the quota itself fell: the rate drops to
  `DECREASE` of the rate before the first, and so on. Each decrease **holds** every admission for
  `60 x (1 - DRAIN x new / old)` seconds: the account's sliding minute is still full of calls made at the old
  rate, and until enough of them age out every call would be throttled (measured, bench/quota.py
  "quota-drop": without the hold the 30 s after a halving cost 15-20 throttled calls; with a hold to
  exactly the new rate, the calls of the pause before it still filled the minute: 10 throttles, 0.75). Throttles within
  `COOLDOWN` of a decrease are calls already in flight and count once. After `QUIET` seconds without a
  throttle the rate climbs back by `INCREASE` of the configured rate every `STEP` seconds, and a throttle
  while climbing goes back to the last rate that was quiet; `QUIET` is long (five minutes) because each
  climb above a lowered quota costs a throttle and a pause (measured with two minutes: a 30 s gap two
  minutes after a halving), and throttled attempts must stay within 2 % of calls; a daily cap lasts hours.
  The state is one shared item, so every sandbox paces to the same rate.

**Reservations.** A refused attempt reserves its future slot in the same counters (`reserve`): it takes
a ticket in the window its place in line points at (its `count` past the budget, and the backlog's far
end, `<model>#tail`, kept as a hint), trying later windows when that one is full, and carries the window
and ticket back in its requeued message. Fresh arrivals see reserved slots as spent tickets, so they
queue behind the backlog instead of taking a returning job's slot; a returning job holding a valid
reservation is admitted without a new ticket (`judge`), once (the ticket is claimed in the window's item,
so a duplicate delivery of the same message takes a new ticket). **How late is too late:** a call
counted in window `t` must be made in `t` for the sliding-minute bound above to be exact; SQS delays are
whole seconds and a delivery lags its delay (the event source's polling, the image preparation before
the ticket: seconds on a loaded machine), so a reservation is honoured from `EARLY` before its window to
`LATE` (3 s) after it, and otherwise given up (the job takes a new ticket: the slot goes unused, never
twice). Under a backlog every window's calls are late by about the same lag, so a late call takes the
place of calls that are late too; what the sliding minute sees is the lag's spread. In a 60 s span a
spread of `L` s can add up to `L` windows' budgets, which the one-window pacing margin covers only for
`L` <= 1 s: measured in a simulation of these decisions (uniform lag, 300 jobs at 60/min) lag up to
0.5 s drains at the paced rate with no throttle, up to 1.5 s costs 4 engine throttles. A tighter `LATE`
gave slots up under load: with 0.5 s, bench/quota.py's quick one-model run on a loaded machine (load
average ~10 on 2 cores) reached 0.21 of the quota; with 3 s, 0.67 and 0.95 in two runs as the load varied.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .errors import JobError, transient

DEFAULT_KEY = "default"   # in the model -> rpm configuration: the budget of every model not listed
WINDOW_SECONDS = 1
MAX_DELAY_SECONDS = 900   # SQS's longest message delay; a job further back takes a new ticket then
MAX_PROBES = 3            # windows a refused attempt tries for a reservation (each one write)
AIM = 0.25                # seconds into its window a requeued job is aimed (delays are whole seconds)
EARLY = 0.5               # a reservation is honoured from this long before its window ...
LATE = 3.0                # ... to this long after it (delivery lag); see "How late is too late"
# AIMD (see the module docstring, "AIMD", for why these values).
NUDGE = 2.0               # seconds a first throttle after a quiet spell holds admissions (the rate stays)
DRAIN = 0.9               # a decrease holds admissions until the old calls in the minute are this share of the new rate
DECREASE = 0.5            # another within RECENT: the quota fell; the rate before the first x this
FLOOR = 0.1               # ... but never below this share of the configured rate (and 1/min)
COOLDOWN = 2.0            # seconds: throttles within this of the last decrease are its own in-flight calls
RECENT = 10.0             # seconds after a hold: a throttle this soon says the last step was not enough
QUIET = 300.0             # seconds without a throttle before the rate climbs back
STEP = 30.0               # seconds per increase
INCREASE = 0.05           # share of the configured rate added per step
THROTTLE_CAUSES = ("throttled", "quota_exceeded")  # the transient causes that say Bedrock's quota was hit
RESERVATION_FIELD = "quota_reservation"  # in a requeued message: the slot its job holds (core/triggers.py)

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
    """A model's shared AIMD state: the rate set at its last decrease, when, the hold that followed it
    (seconds without admissions) and the rate before this episode of decreases began."""

    rpm: float
    since: float
    hold: float = 0.0
    top: float | None = None


def floor_rpm(configured: float) -> float:
    return max(1.0, configured * FLOOR)


def effective_rpm(configured: float, state: Rate | None, now: float) -> float:
    """The rate to pace to now: 0 while a decrease holds, else the last decrease plus the increases
    earned by quiet time since."""
    if state is None:
        return configured
    if now < state.since + state.hold:
        return 0.0
    quiet = now - state.since - QUIET
    steps = math.floor(quiet / STEP) + 1 if quiet >= 0 else 0
    return max(floor_rpm(configured), min(configured, state.rpm + steps * INCREASE * configured))


def lowered(configured: float, state: Rate | None, now: float) -> Rate | None:
    """The state after a throttle at `now`, or None within `COOLDOWN` of the last decrease.

    A throttle while climbing back: the last rate that was quiet. One after a quiet spell: the same rate,
    held for `NUDGE` seconds (a pacing edge: delivery lag bunched some calls). Another within `RECENT` of
    the last one's hold: the quota fell, `DECREASE` of the rate before the first."""
    if state is not None and now - state.since < COOLDOWN:
        return None
    current = effective_rpm(configured, state, now) or (state.rpm if state else configured)
    if state is not None and current > state.rpm + 1e-9:  # climbing: this step was one too many
        new, top = state.rpm, state.top
    elif state is not None and now - state.since - state.hold < RECENT:  # the last one was not enough
        top = state.top or configured
        new = max(floor_rpm(configured), top * DECREASE if state.rpm >= top - 1e-9 else state.rpm * DECREASE)
    else:
        return Rate(current, now, NUDGE, current)
    # Until the minute holds DRAIN of the new rate: the calls made since the first throttle count too.
    return Rate(new, now, max(0.0, 60.0 * (1 - DRAIN * new / max(current, top or current))), top)


# ---- reservations --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reservation:
    """A slot held by a requeued job: ticket `ticket` of `model_id`'s window `window`."""

    model_id: str
    window: int
    ticket: int

    def to_message(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "window": self.window, "ticket": self.ticket}

    @classmethod
    def from_message(cls, value: Any) -> Reservation | None:
        """The reservation a message carries, or None for anything malformed (the job then takes a new
        ticket: a reservation only ever saves a wait, so a bad one costs nothing but that)."""
        if not isinstance(value, dict) or set(value) != {"model_id", "window", "ticket"}:
            return None
        model_id, window, ticket = value["model_id"], value["window"], value["ticket"]
        if (not isinstance(model_id, str) or not 0 < len(model_id) <= 2048
                or any(isinstance(v, bool) or not isinstance(v, int) for v in (window, ticket))
                or window < 0 or ticket < 1):
            return None
        return cls(model_id, window, ticket)


@dataclass(frozen=True)
class Admission:
    """What the limiter said: 0 admits the call; else the seconds to wait, and the slot reserved then."""

    wait: int
    reservation: Reservation | None = None


class Counters(Protocol):
    """The shared counters one model's decisions need (DynamoDB in production: aws/quota.py)."""

    def add(self, model_id: str, window: int) -> int: ...            # take the next ticket of a window

    def claim(self, model_id: str, window: int, ticket: int) -> bool: ...  # first claim of a ticket: True

    def tail(self, model_id: str) -> int | None: ...                 # the farthest window reserved (a hint)

    def extend_tail(self, model_id: str, window: int) -> None: ...   # ... raised to `window` if below


def budget_at(configured: float, state: Rate | None, window: int, seconds: float = WINDOW_SECONDS) -> int:
    """Admissions in `window` at the rate the AIMD state gives at its start."""
    return window_budget(effective_rpm(configured, state, window * seconds), window, seconds)


def target_window(after: int, excess: int, budget_of: Callable[[int], int], last: int) -> int | None:
    """The first window after `after` whose budgets, added up, cover `excess` places (None: beyond `last`)."""
    covered, window = 0, after
    while covered < excess:
        window += 1
        if window > last:
            return None
        covered += budget_of(window)
    return window


def delay_to(window: int, now: float, seconds: float = WINDOW_SECONDS) -> int:
    """Whole seconds (SQS's) that bring a message back closest to `AIM` into `window`."""
    return max(1, min(MAX_DELAY_SECONDS, round(window * seconds + AIM - now)))


def judge(reservation: Reservation, budget_of: Callable[[int], int], now: float,
          seconds: float = WINDOW_SECONDS) -> int | bool:
    """A returning reservation: True (honour it), False (too late, or the rate fell below its ticket: take
    a new ticket) or the whole seconds it is early by (it goes back again, still holding its slot)."""
    start = reservation.window * seconds
    if now < start - EARLY:
        return delay_to(reservation.window, now, seconds)
    return now < start + seconds + LATE and reservation.ticket <= budget_of(reservation.window)


def admit(counters: Counters, model_id: str, configured: float, state: Rate | None, now: float,
          reservation: Reservation | None = None, seconds: float = WINDOW_SECONDS) -> Admission:
    """One attempt at a model call: honour the reservation it holds, else take a ticket of this window;
    refused, reserve a later slot."""
    def budget_of(window: int) -> int:
        return budget_at(configured, state, window, seconds)

    if reservation is not None and reservation.model_id == model_id:
        verdict = judge(reservation, budget_of, now, seconds)
        if verdict is not True and verdict is not False:
            return Admission(verdict, reservation)
        if verdict and counters.claim(model_id, reservation.window, reservation.ticket):
            return Admission(0)
    window = window_of(now, seconds)
    excess = counters.add(model_id, window) - budget_of(window)
    if excess <= 0:
        return Admission(0)
    return reserve(counters, model_id, window, excess, budget_of, now, seconds)


def reserve(counters: Counters, model_id: str, window: int, excess: int, budget_of: Callable[[int], int],
            now: float, seconds: float = WINDOW_SECONDS) -> Admission:
    """A slot for an attempt `excess` places past `window`'s budget: the window its place points at, or
    the backlog's far end when that is later, taking a ticket there; a full window sends it on by its
    own excess (at most `MAX_PROBES` writes). None found: the wait without a reservation."""
    last = window_of(now + MAX_DELAY_SECONDS - 1, seconds)
    hint = counters.tail(model_id)
    target = target_window(window, excess, budget_of, last)
    if target is not None and hint is not None and target < hint <= last:
        target = hint
    for _ in range(MAX_PROBES):
        if target is None:
            return Admission(MAX_DELAY_SECONDS)
        ticket = counters.add(model_id, target)
        over = ticket - budget_of(target)
        if over <= 0:
            if hint is None or target > hint:
                counters.extend_tail(model_id, target)
            return Admission(delay_to(target, now, seconds), Reservation(model_id, target, ticket))
        target = target_window(target, over, budget_of, last)
    return Admission(delay_to(target, now, seconds) if target is not None else MAX_DELAY_SECONDS)


def within_quota(limiter: Any, model_id: str, call: Callable[[], T], *,
                 reservation: Reservation | None = None) -> T:
    """`call()` (the model invocation) once `limiter` (a core.ports.QuotaLimiter) admits it.

    No slot: the transient `quota_wait`, carrying `retry_after` seconds and the `reservation` it holds for
    then (the worker requeues it with the message), and no model call. A throttle from the call lowers
    the model's shared rate before it propagates. No limiter: just the call."""
    if limiter is None:
        return call()
    admission = limiter.acquire(model_id, reservation=reservation)
    if admission.wait > 0:
        held = admission.reservation.to_message() if admission.reservation else None
        raise transient("quota_wait", f"{model_id} has no request left in this deployment's quota for now; "
                        f"the job comes back in {admission.wait} s", retry_after=admission.wait,
                        **({"reservation": held} if held else {}))
    try:
        return call()
    except JobError as exc:
        if exc.code in THROTTLE_CAUSES:
            limiter.throttled(model_id)
        raise
