"""Small, deterministic statistics for comparison reports and benchmarks.

`paired_bootstrap` gives a confidence interval for the mean per-sample difference between two runs scored on the
same samples (aligned by sample id). Resample `r` draws `n` indices with replacement from
`numpy.random.default_rng(seed)` (`integers(0, n, size=n)`, resamples in order), so the interval is a pure
function of the scores, the seed and the resample count. The interval is the percentile interval of the
resampled means (linear interpolation between order statistics, numpy's default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

_CHUNK = 512  # resamples drawn per numpy call; the draws equal one `integers(0, n, size=n)` call per resample


@dataclass(frozen=True)
class PairedCI:
    """Mean of `candidate - baseline` over `n` paired samples, with a bootstrap interval."""

    delta: float
    low: float
    high: float
    n: int
    confidence: float
    resamples: int
    seed: int

    def scaled(self, factor: float) -> PairedCI:
        """The same interval in other units (e.g. per-sample 0/1 scores to metric points 0-100)."""
        return PairedCI(self.delta * factor, self.low * factor, self.high * factor, self.n, self.confidence,
                        self.resamples, self.seed)

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(baseline: Sequence[float], candidate: Sequence[float], *, resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0) -> PairedCI:
    """Percentile bootstrap CI of mean(candidate - baseline) over aligned per-sample scores."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-D sequences of equal length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("paired bootstrap needs at least one sample")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    d = b - a
    n = len(d)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, _CHUNK):
        k = min(_CHUNK, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        means[start:start + k] = d[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    delta = float(d.mean())
    # Rounding in the resampled means can put a constant difference a few ulps outside itself.
    if np.all(d == d[0]):
        low = high = delta
    return PairedCI(delta, float(low), float(high), n, confidence, resamples, seed)


@dataclass(frozen=True)
class Summary:
    """Median with min and max over repeats."""

    median: float
    min: float
    max: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Median, min and max of a non-empty list of numbers (NaNs are an error)."""
    if len(values) == 0:
        raise ValueError("summarize needs at least one value")
    arr = np.asarray(values, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError("summarize got NaN")
    return Summary(float(np.median(arr)), float(arr.min()), float(arr.max()), len(arr))


def infer_scale(per_sample_mean: float, metric_value: float, max_abs_score: float, tol: float = 0.05) -> float | None:
    """The factor that turns a mean of per-sample scores into the reported metric: 100 for scores in [0, 1]
    and a 0-100 metric, 1 when both share a scale; None when the metric is not such a mean."""
    factors = (100.0, 1.0) if max_abs_score <= 1.0 else (1.0,)
    for factor in factors:
        if math.isclose(per_sample_mean * factor, metric_value, abs_tol=tol):
            return factor
    return None
