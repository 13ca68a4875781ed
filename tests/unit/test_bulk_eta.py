"""A bulk job's ETA: the rows left at the model's configured quota (modelQuotas), else at the rate observed."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from img2img.core import bulk


def test_the_quota_wins_over_the_observed_rate():
    # 600 rows left, the model paced to 60 requests per minute: 10 minutes, however fast the start was
    assert bulk.eta_seconds(600, 60, observed_rpm=500.0) == 600
    assert bulk.eta_seconds(600, None, observed_rpm=120.0) == 300  # no quota: the rate so far
    assert bulk.eta_seconds(1, 7, observed_rpm=0.0) == 9           # rounded up: never "0 s" with rows left


def test_no_rate_yet_is_no_eta_and_done_is_zero():
    assert bulk.eta_seconds(50, None, observed_rpm=0.0) is None
    assert bulk.eta_seconds(0, None, observed_rpm=0.0) == 0
    assert bulk.observed_rate(0, 30) == 0.0 and bulk.observed_rate(30, 60) == 30.0


@given(remaining=st.integers(1, 10**6), quota=st.one_of(st.none(), st.integers(1, 10**4)),
       observed=st.floats(0.01, 1e5))
def test_the_eta_is_the_time_the_rows_take_at_the_rate_used(remaining, quota, observed):
    eta = bulk.eta_seconds(remaining, quota, observed)
    rate = quota or observed
    assert eta is not None and eta >= 1
    assert eta - 1 < remaining / rate * 60 <= eta + 1e-6  # the rate's time, rounded up to a whole second
    assert bulk.eta_seconds(remaining + 1, quota, observed) >= eta  # more rows never finish sooner


def test_the_status_line_shows_the_quota_eta():
    from img2img_local.bulk import status_line

    progress = bulk.progress_of("b", {"n_succeeded": 10}, {"rows": 100, "created_at": 1000.0})
    line = status_line(progress, now=1060.0, quota_rpm=30)
    assert line.endswith("10 rows/min, ETA 180 s (quota 30/min)")
    assert status_line(progress, now=1060.0).endswith("10 rows/min, ETA 540 s")  # observed rate
    done = bulk.progress_of("b", {"n_succeeded": 100}, {"rows": 100, "created_at": 1000.0})
    assert "ETA" not in status_line(done, now=1060.0, quota_rpm=30)
