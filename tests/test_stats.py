"""Statistics on small cases checked against independent, direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qwen3vl_eval.report.stats import infer_scale, paired_bootstrap, summarize


def _reference_ci(base, cand, resamples, confidence, seed):
    """The documented algorithm written as a plain loop: per resample, n indices from one `integers` call,
    the mean of the differences by hand, then the linearly interpolated percentiles of the sorted means."""
    d = [c - b for b, c in zip(base, cand)]
    n = len(d)
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        total = 0.0
        for i in idx:
            total += d[int(i)]
        means.append(total / n)
    means.sort()

    def quantile(q):
        pos = q * (len(means) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(means) - 1)
        return means[lo] + (means[hi] - means[lo]) * (pos - lo)

    alpha = (1 - confidence) / 2
    return sum(d) / n, quantile(alpha), quantile(1 - alpha)


@pytest.mark.parametrize("n", [5, 7, 64])
def test_paired_bootstrap_matches_direct_loop(n):
    rng = np.random.default_rng(123)
    base = rng.integers(0, 2, size=n).astype(float).tolist()
    cand = rng.integers(0, 2, size=n).astype(float).tolist()
    ci = paired_bootstrap(base, cand, resamples=1100, confidence=0.9, seed=7)  # > one chunk of draws
    delta, lo, hi = _reference_ci(base, cand, 1100, 0.9, 7)
    assert ci.delta == pytest.approx(delta, abs=1e-12)
    assert ci.low == pytest.approx(lo, abs=1e-12)
    assert ci.high == pytest.approx(hi, abs=1e-12)
    assert ci.n == n and ci.low <= ci.delta <= ci.high


def test_paired_bootstrap_hand_case():
    # Differences (+1, 0, 0, -1): mean 0; the interval is symmetric-ish around 0 and within [-1, 1].
    ci = paired_bootstrap([0, 1, 1, 1], [1, 1, 1, 0], resamples=2000, seed=0)
    assert ci.delta == 0.0
    assert -1.0 <= ci.low < 0.0 < ci.high <= 1.0


def test_paired_bootstrap_is_deterministic_and_seeded():
    base, cand = [0, 1, 0, 1, 1, 0, 0, 1], [1, 1, 0, 0, 1, 1, 1, 1]
    a = paired_bootstrap(base, cand, resamples=500, seed=3)
    b = paired_bootstrap(base, cand, resamples=500, seed=3)
    c = paired_bootstrap(base, cand, resamples=500, seed=4)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


@pytest.mark.parametrize("scores", [[1, 1, 1, 1], [0, 0, 0], [0.37] * 11])
def test_equal_scores_give_zero_width_interval(scores):
    ci = paired_bootstrap(scores, scores, resamples=300, seed=0)
    assert ci.delta == ci.low == ci.high == 0.0
    assert not ci.excludes_zero()


def test_constant_difference_gives_that_point():
    ci = paired_bootstrap([0.1, 0.2, 0.3], [0.6, 0.7, 0.8], resamples=300, seed=0)
    assert (ci.low, ci.high, ci.delta) == pytest.approx((0.5, 0.5, 0.5), abs=1e-12)
    assert ci.excludes_zero()


def test_scaled_interval():
    ci = paired_bootstrap([0, 0, 1, 1], [1, 1, 1, 1], resamples=300, seed=0).scaled(100)
    assert ci.delta == pytest.approx(50.0)
    assert 0.0 <= ci.low <= 50.0 <= ci.high <= 100.0


@pytest.mark.parametrize("base,cand", [([], []), ([1, 2], [1]), ([[1]], [[1]])])
def test_paired_bootstrap_rejects_bad_input(base, cand):
    with pytest.raises(ValueError):
        paired_bootstrap(base, cand)


def test_summarize():
    s = summarize([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.min, s.max, s.n) == (2.5, 1.0, 10.0, 4)
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])


def test_infer_scale():
    assert infer_scale(0.75, 75.0, 1.0) == 100.0
    assert infer_scale(0.75, 0.75, 1.0) == 1.0
    assert infer_scale(62.5, 62.5, 100.0) == 1.0
    assert infer_scale(0.5, 80.0, 1.0) is None
