"""The t interval of a mean (:func:`mean_ci`), which ``describe`` builds on.

``results.csv`` and ``summary.csv`` are the analysis' own tables
(:func:`ablab.analysis.summaries.study_tables`), the same the report shows.
"""

from __future__ import annotations

import math

import numpy as np


def mean_ci(values, confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std and a t-based confidence interval of the mean.

    >>> mean_ci([1.0, 2.0, 3.0])["ci_low"] < 2.0 < mean_ci([1.0, 2.0, 3.0])["ci_high"]
    True
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    mean = float(x.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    from scipy import stats  # here, not with the module (see ablab.analysis.stats)

    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def finite_values(values) -> np.ndarray:
    """The finite numbers of ``values`` (None, NaN and ±inf dropped) as a float array."""
    return np.asarray(
        [float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float
    )


#: Per-seed values closer than this are the same value (accuracies are multiples of
#: 1/n_test; 0.90 − 0.70 and 0.91 − 0.71 differ only by rounding): a constant sample.
CONSTANT_TOL = 1e-12


def constant(values: np.ndarray) -> bool:
    """The values are one value, up to rounding (their range ≤ CONSTANT_TOL)."""
    return len(values) > 0 and float(np.ptp(values)) <= CONSTANT_TOL
