"""The per-model quota's decisions (core/quota.py): budgets, windows, return times, AIMD."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2img.core import quota as Q
from img2img.core.errors import JobError, transient

W = Q.WINDOW_SECONDS


class Table:
    """The shared table's counters in memory (core.quota.Counters): a stand-in for DynamoDB."""

    def __init__(self):
        self.counts, self.claimed, self.tails = {}, set(), {}

    def add(self, model_id: str, window: int) -> int:
        self.counts[model_id, window] = self.counts.get((model_id, window), 0) + 1
        return self.counts[model_id, window]

    def claim(self, model_id: str, window: int, ticket: int) -> bool:
        fresh = (model_id, window, ticket) not in self.claimed
        self.claimed.add((model_id, window, ticket))
        return fresh

    def tail(self, model_id: str) -> int | None:
        return self.tails.get(model_id)

    def extend_tail(self, model_id: str, window: int) -> None:
        self.tails[model_id] = max(window, self.tails.get(model_id, window))


class CounterLimiter:
    """The DynamoDB adapter's logic over the in-memory table, at a fixed rate."""

    def __init__(self, rpm: float):
        self.rpm, self.table, self.throttles, self.now = rpm, Table(), 0, 0.0

    def acquire(self, model_id: str, now: float | None = None, *, reservation=None) -> Q.Admission:
        return Q.admit(self.table, model_id, self.rpm, None, self.now if now is None else now, reservation)

    def throttled(self, model_id: str) -> None:
        self.throttles += 1


def test_budgets_from_configuration_with_a_default_for_unlisted_models():
    budgets = Q.Budgets.from_config({"default": 30, "amazon.nova-canvas-v1:0": 120})
    assert budgets.rpm_for("amazon.nova-canvas-v1:0") == 120
    assert budgets.rpm_for("stability.sd3-5-large-v1:0") == 30
    assert Q.Budgets.from_config({}).rpm_for("any") is None  # nothing configured: not limited


@pytest.mark.parametrize("bad", [0, -5, 1.5, "60", True])
def test_a_budget_must_be_a_positive_integer(bad):
    with pytest.raises(Q.QuotaConfigError):
        Q.Budgets.from_config({"m": bad})


@pytest.mark.parametrize("rpm", [1, 7, 12, 60, 61, 600])
def test_no_60_s_span_is_given_more_than_the_rate_and_almost_all_of_it_is_used(rpm):
    span = int(60 / W) + 1  # the windows a sliding 60 s span touches
    for start in (0, 5, 1234, 10**6):
        assert sum(Q.window_budget(rpm, w) for w in range(start, start + span)) == rpm
    hour = sum(Q.window_budget(rpm, w) for w in range(int(3600 / W)))
    assert rpm * 60 * 60 / (60 + W) - 1 <= hour <= rpm * 60  # the margin: W / (60 + W) of the rate


def test_tickets_within_the_budget_go_at_once_the_rest_wait_for_their_turn_in_order():
    rpm, now = 5 * 61, 100.0  # 5 a window
    waits = [Q.decide(n, rpm, now) for n in range(1, 31)]
    assert waits[:5] == [0] * 5
    refused = waits[5:]
    assert all(w >= 1 for w in refused) and refused == sorted(refused)
    # tickets 6..10 -> the next window (starts at 101), 11..15 the one after, ...
    assert refused[0] == 1 and refused[5] == 2 and refused[-1] == 5


def test_a_backlog_comes_back_spread_at_the_rate_not_all_at_the_next_window():
    rpm, now = 61, 0.0  # 1 a window
    waits = [Q.decide(n, rpm, now, jitter=0.5) for n in range(2, 50)]
    by_window = {}
    for wait in waits:
        by_window[Q.window_of(now + wait)] = by_window.get(Q.window_of(now + wait), 0) + 1
    assert max(by_window.values()) == 1  # one job per window: each gets the slot that is due


def test_no_wait_exceeds_the_longest_sqs_delay():
    assert Q.decide(10_000, 1, 0.0) == Q.MAX_DELAY_SECONDS


@settings(max_examples=200, deadline=None)
@given(rpm=st.integers(1, 1200),
       arrivals=st.lists(st.floats(0, 300, allow_nan=False), min_size=1, max_size=400))
def test_never_more_than_the_budget_admitted_per_window_whatever_the_interleaving(rpm, arrivals):
    limiter = CounterLimiter(rpm)
    admitted: dict[int, int] = {}
    for now in sorted(arrivals):
        if limiter.acquire("m", now).wait == 0:
            admitted[Q.window_of(now)] = admitted.get(Q.window_of(now), 0) + 1
    for window, count in admitted.items():
        assert count <= Q.window_budget(rpm, window)
    # so no 60 s span (60/W + 1 windows) admits more than the rate
    span = int(60 / W) + 1
    for first in admitted:
        assert sum(admitted.get(w, 0) for w in range(first, first + span)) <= rpm


@settings(max_examples=100, deadline=None)
@given(rpm=st.integers(1, 600), now=st.floats(0, 1e6, allow_nan=False), count=st.integers(1, 5000),
       jitter=st.floats(0, 0.999))
def test_a_refused_ticket_returns_in_a_window_whose_budget_exists(rpm, now, count, jitter):
    wait = Q.decide(count, rpm, now, jitter)
    if wait and wait < Q.MAX_DELAY_SECONDS:
        assert Q.window_of(now + wait) > Q.window_of(now)
        assert Q.window_budget(rpm, Q.window_of(now + wait)) >= 1


def test_one_throttle_pauses_a_second_halves_and_quiet_time_raises_the_rate_back():
    configured = 100
    first = Q.lowered(configured, None, 1000.0)  # one throttle after a quiet spell: a pacing edge
    assert first.rpm == configured and first.hold == Q.NUDGE
    assert Q.effective_rpm(configured, first, 1000.0 + Q.NUDGE / 2) == 0  # a pause ...
    assert Q.effective_rpm(configured, first, 1000.0 + Q.NUDGE) == configured  # ... at the same rate
    assert Q.lowered(configured, first, 1000.0 + Q.COOLDOWN / 2) is None  # the same burst
    second = Q.lowered(configured, first, 1000.0 + Q.NUDGE + 1)  # right after: the quota fell
    assert second.rpm == pytest.approx(100 * Q.DECREASE)
    assert second.hold == pytest.approx(60 * (1 - Q.DRAIN * Q.DECREASE))  # the account's minute drains meanwhile
    third = Q.lowered(configured, second, second.since + second.hold + 1)
    assert third.rpm == pytest.approx(100 * Q.DECREASE * Q.DECREASE)
    assert Q.effective_rpm(configured, second, second.since + Q.QUIET - 1) == pytest.approx(second.rpm)
    assert Q.effective_rpm(configured, second, second.since + Q.QUIET) == pytest.approx(second.rpm + 5)
    assert Q.effective_rpm(configured, second, second.since + 3600) == configured  # never above the configured
    climbing = Q.lowered(configured, second, second.since + Q.QUIET + 1)  # the first step up was too much
    assert climbing.rpm == pytest.approx(second.rpm) and climbing.hold > 0
    later = Q.lowered(configured, second, second.since + second.hold + Q.RECENT + 1)  # long after: an edge again
    assert later.rpm == pytest.approx(second.rpm) and later.hold == Q.NUDGE


@settings(max_examples=200, deadline=None)
@given(configured=st.integers(1, 2000),
       events=st.lists(st.tuples(st.booleans(), st.floats(0, 120, allow_nan=False)), max_size=60))
def test_aimd_stays_between_its_floor_and_the_configured_rate(configured, events):
    state, now = None, 0.0
    for throttle, gap in events:
        now += gap
        if throttle:
            state = Q.lowered(configured, state, now) or state
        rate = Q.effective_rpm(configured, state, now)
        assert (rate == 0 and now < state.since + state.hold) or Q.floor_rpm(configured) <= rate <= configured


def test_within_quota_calls_the_model_only_with_a_slot():
    limiter, calls = CounterLimiter(61), []  # 1 a window
    assert Q.within_quota(limiter, "m", lambda: calls.append(1) or "answer") == "answer"
    with pytest.raises(JobError) as refused:
        Q.within_quota(limiter, "m", lambda: calls.append(1))
    assert calls == [1]
    assert refused.value.code == "quota_wait" and refused.value.retryable
    assert refused.value.details["retry_after"] >= 1
    assert refused.value.details["reservation"] == {"model_id": "m", "window": 1, "ticket": 1}
    assert Q.within_quota(None, "m", lambda: "no limiter") == "no limiter"


@pytest.mark.parametrize("cause, lowers", [("throttled", True), ("quota_exceeded", True), ("model_timeout", False)])
def test_only_bedrock_throttles_lower_the_rate(cause, lowers):
    limiter = CounterLimiter(600)

    def call():
        raise transient(cause, "from Bedrock")

    with pytest.raises(JobError):
        Q.within_quota(limiter, "m", call)
    assert limiter.throttles == (1 if lowers else 0)


@settings(max_examples=100, deadline=None)
@given(rpm=st.integers(1, 600), skew=st.floats(-3, 3, allow_nan=False),
       arrivals=st.lists(st.tuples(st.booleans(), st.floats(0, 200, allow_nan=False)), min_size=1, max_size=300))
def test_clock_skew_between_callers_costs_at_most_the_budget_of_the_skewed_windows(rpm, skew, arrivals):
    """Two sandboxes share one counter; one clock is `skew` seconds off. Real time decides the quota."""
    limiter, admitted_at = CounterLimiter(rpm), []
    for skewed, real in arrivals:
        if limiter.acquire("m", real + skew if skewed else real).wait == 0:
            admitted_at.append(real)
    admitted_at.sort()
    extra = sum(Q.window_budget(rpm, w) for w in range(0, math.ceil(abs(skew) / W) + 1)) + 1
    for i, start in enumerate(admitted_at):
        in_span = sum(1 for t in admitted_at[i:] if t < start + 60)
        assert in_span <= rpm + extra


def test_a_crashed_holder_holds_nothing_the_next_window_has_its_whole_budget():
    limiter, rpm = CounterLimiter(5 * 61), 5 * 61  # 5 a window
    assert [limiter.acquire("m", 10.0).wait for _ in range(5)] == [0] * 5  # taken; their callers crash
    assert limiter.acquire("m", 10.5, reservation=None).wait > 0  # this window is spent (and 11 has one reserved)
    assert [limiter.acquire("m", 11.0).wait for _ in range(4)] == [0] * 4  # ...the next is whole but for that
    assert Q.window_budget(rpm, 11) == 5
    # a crashed holder of a reservation: its slot goes unused, and the window after is whole again
    assert [limiter.acquire("m", 12.0).wait for _ in range(5)] == [0] * 5


# ---- reservations --------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(rpm=st.integers(1, 600), events=st.lists(st.tuples(st.sampled_from(["fresh", "return", "again"]),
                                                          st.floats(0, 4, allow_nan=False)), min_size=1, max_size=300))
def test_no_window_gives_more_than_its_budget_whatever_fresh_and_returning_tickets_do(rpm, events):
    """Fresh arrivals, returns of reserved jobs (on time, early, late) and duplicate deliveries, interleaved:
    each window admits at most its budget, counting a reservation in the window it was given for, and
    each reservation is honoured at most once."""
    table, now, held, by_window, honoured = Table(), 0.0, [], {}, []
    for kind, gap in events:
        now += gap / 4
        reservation = None
        if kind != "fresh" and held:
            reservation = held.pop(0) if kind == "return" else held[0]  # "again": the same message twice
        claims = len(table.claimed)
        admission = Q.admit(table, "m", rpm, None, now, reservation)
        if admission.wait == 0:
            if reservation is not None and len(table.claimed) > claims and Q.judge(
                    reservation, lambda w: Q.window_budget(rpm, w), now) is True:
                honoured.append((reservation.window, reservation.ticket))
                window = reservation.window
            else:
                window = Q.window_of(now)
            by_window[window] = by_window.get(window, 0) + 1
        elif admission.reservation is not None:
            if admission.reservation != reservation:
                held.append(admission.reservation)
            assert Q.window_of(now) < admission.reservation.window  # always a later window
    for window, n in by_window.items():
        assert n <= Q.window_budget(rpm, window)
    assert len(honoured) == len(set(honoured))  # each honoured once
    assert all(ticket <= Q.window_budget(rpm, window) for window, ticket in honoured)


@settings(max_examples=200, deadline=None)
@given(rpm=st.integers(1, 600), now=st.floats(0, 1e6, allow_nan=False), count=st.integers(1, 400))
def test_a_burst_is_given_distinct_slots_in_line(rpm, now, count):
    """A burst of refused attempts in one window: every slot reserved is within its window's budget and
    none is given twice, so the backlog drains at the rate."""
    table = Table()
    slots = []
    for _ in range(count):
        admission = Q.admit(table, "m", rpm, None, now)
        if admission.reservation is not None:
            slots.append((admission.reservation.window, admission.reservation.ticket))
    assert len(slots) == len(set(slots))
    assert all(ticket <= Q.window_budget(rpm, window) for window, ticket in slots)


def test_a_returning_reservation_is_honoured_in_its_window_early_or_late_within_the_grace():
    table = Table()
    rpm, now = 61, 100.2  # 1 a window
    assert Q.admit(table, "m", rpm, None, now).wait == 0
    refused = Q.admit(table, "m", rpm, None, now)
    held = refused.reservation
    assert held == Q.Reservation("m", 101, 1) and refused.wait == 1  # back at 101.2: in its window
    early = Q.admit(table, "m", rpm, None, 101 - Q.EARLY - 0.2, held)
    assert early.wait >= 1 and early.reservation == held  # too early: back again, still holding it
    assert Q.admit(table, "m", rpm, None, 101 + 1 + Q.LATE - 0.01, held).wait == 0  # late, within the grace
    Q.admit(table, "m", rpm, None, 102.5, held)  # the same message again (a duplicate delivery)
    assert table.counts["m", 102] == 1  # honoured once: the duplicate took a ticket of its own


def test_a_reservation_is_given_up_when_the_rate_fell_below_its_ticket():
    table, rpm = Table(), 5 * 61  # 5 a window
    held = Q.Reservation("m", 11, 5)
    state = Q.Rate(rpm * 0.5, 0.0)  # since lowered: 2 or 3 a window
    assert Q.judge(held, lambda w: Q.budget_at(rpm, state, w), 11.1) is False
    assert Q.admit(table, "m", rpm, None, 11.1, held).wait == 0


def test_delays_are_aimed_into_the_reserved_window():
    for now in (100.0, 100.2, 100.5, 100.74, 100.99):
        d = Q.delay_to(105, now)
        assert 105 - Q.EARLY <= now + d < 106  # whole seconds, inside its window or within EARLY of it


@pytest.mark.parametrize("value", [None, "x", {}, {"model_id": "m", "window": 1}, {"model_id": "m", "window": "1",
                                   "ticket": 1}, {"model_id": "", "window": 1, "ticket": 1},
                                   {"model_id": "m", "window": 1, "ticket": 0}, {"model_id": "m", "window": True,
                                   "ticket": 1}, {"model_id": "m", "window": 1, "ticket": 1, "extra": 1}])
def test_a_malformed_reservation_reads_as_none(value):
    assert Q.Reservation.from_message(value) is None


def test_a_reservation_round_trips_through_a_message():
    held = Q.Reservation("stability.sd3-5-large-v1:0", 123, 4)
    assert Q.Reservation.from_message(held.to_message()) == held


@pytest.mark.parametrize("message", [
    {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "in"}, "object": {"key": "a.png"}}}]},
    {"type": "img2img.job", "source": "s3://in-bucket/a.png", "params": {"prompt": "x"}},
    {"source": "aws.s3", "detail-type": "Object Created",
     "detail": {"bucket": {"name": "in"}, "object": {"key": "a.png"}}},
])
def test_every_requeued_shape_carries_its_reservation_outside_the_jobs_identity(message):
    from img2img.core.triggers import parse_body

    held = Q.Reservation("m", 7, 1)
    plain = parse_body(json.dumps(message))
    carried = parse_body(json.dumps({**message, Q.RESERVATION_FIELD: held.to_message()}))
    assert [t.reservation for t in carried] == [held] and carried == plain  # same job, same identity
    assert carried[0].error is None
    bad = parse_body(json.dumps({**message, Q.RESERVATION_FIELD: {"window": -1}}))
    assert [t.reservation for t in bad] == [None] and bad == plain
