"""The per-model quota's decisions (core/quota.py): budgets, windows, return times, AIMD."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from img2img.core import quota as Q
from img2img.core.errors import JobError, transient

W = Q.WINDOW_SECONDS


class CounterLimiter:
    """The DynamoDB adapter's logic over an in-memory counter: a stand-in for the shared table."""

    def __init__(self, rpm: float):
        self.rpm, self.counts, self.throttles = rpm, {}, 0

    def ticket(self, now: float) -> int:
        window = Q.window_of(now)
        self.counts[window] = self.counts.get(window, 0) + 1
        return self.counts[window]

    def acquire(self, model_id: str, now: float = 0.0) -> int:
        return Q.decide(self.ticket(now), self.rpm, now)

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
    for now in arrivals:
        if limiter.acquire("m", now) == 0:
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


def test_a_throttle_lowers_the_rate_once_per_burst_and_quiet_time_raises_it_back():
    configured = 100
    first = Q.lowered(configured, None, 1000.0)
    assert first.rpm == pytest.approx(75)
    assert Q.lowered(configured, first, 1000.0 + Q.COOLDOWN / 2) is None  # the same burst
    second = Q.lowered(configured, first, 1000.0 + Q.COOLDOWN)
    assert second.rpm == pytest.approx(75 * Q.DECREASE)
    assert Q.effective_rpm(configured, second, second.since + Q.QUIET - 1) == pytest.approx(second.rpm)
    assert Q.effective_rpm(configured, second, second.since + Q.QUIET) == pytest.approx(second.rpm + 5)
    assert Q.effective_rpm(configured, second, second.since + 3600) == configured  # never above the configured


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
        assert Q.floor_rpm(configured) <= rate <= configured


def test_within_quota_calls_the_model_only_with_a_slot():
    limiter, calls = CounterLimiter(61), []  # 1 a window
    assert Q.within_quota(limiter, "m", lambda: calls.append(1) or "answer") == "answer"
    with pytest.raises(JobError) as refused:
        Q.within_quota(limiter, "m", lambda: calls.append(1))
    assert calls == [1]
    assert refused.value.code == "quota_wait" and refused.value.retryable
    assert refused.value.details["retry_after"] >= 1
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
        if limiter.acquire("m", real + skew if skewed else real) == 0:
            admitted_at.append(real)
    admitted_at.sort()
    extra = sum(Q.window_budget(rpm, w) for w in range(0, math.ceil(abs(skew) / W) + 1)) + 1
    for i, start in enumerate(admitted_at):
        in_span = sum(1 for t in admitted_at[i:] if t < start + 60)
        assert in_span <= rpm + extra


def test_a_crashed_holder_holds_nothing_the_next_window_has_its_whole_budget():
    limiter, rpm = CounterLimiter(5 * 61), 5 * 61  # 5 a window
    assert [limiter.acquire("m", 10.0) for _ in range(5)] == [0] * 5  # taken; their callers crash
    assert limiter.acquire("m", 10.5) > 0  # this window is spent...
    assert [limiter.acquire("m", 11.0) for _ in range(5)] == [0] * 5  # ...the next is whole: nothing to release
    assert Q.window_budget(rpm, 11) == 5
