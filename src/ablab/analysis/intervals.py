"""Summaries of one sample over seeds: the t interval of the mean on the metric's scale,
and a seeded percentile bootstrap interval for small or skewed samples."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ablab.analysis.scales import SCALES, Scale
from ablab.analysis.tables import finite_values, mean_ci

#: Samples smaller than this, or with |skewness| above SKEW_LIMIT, also get a bootstrap CI.
BOOTSTRAP_BELOW_N = 5
SKEW_LIMIT = 1.0


def bootstrap_ci(
    values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (``scipy.stats.bootstrap``), seeded so a report
    is reproducible. A constant sample gives ``(mean, mean)``; fewer than 2 values NaNs.

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    x = finite_values(values)
    if len(x) < 2:
        return (math.nan, math.nan)
    if np.ptp(x) == 0:
        return (float(x[0]), float(x[0]))
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (x,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def describe(
    values, confidence: float = 0.95, scale: Scale | str = "real"
) -> dict[str, float | int | str | None]:
    """n, mean, std, t-based CI, skewness, and a bootstrap CI when the sample is small
    (n < 5) or skewed (|skew| > 1). ``ci_method`` says which CI the report should show
    first: ``"bootstrap"`` when one was computed, else ``"t"``. On a bounded ``scale``
    (``"unit"`` for accuracies, ``"positive"`` for losses) the t-interval is made on the
    transformed scale (:func:`mean_ci_in_scale`), so it stays inside the bounds; the
    percentile bootstrap interval lies inside the data's range anyway.

    >>> d = describe([1.0, 2.0, 3.0, 4.0, 5.0]); d["ci_method"], round(d["ci_low"], 3)
    ('t', 1.037)
    """
    x = finite_values(values)
    out: dict[str, float | int | str | None] = dict(mean_ci(x, confidence))
    out["skew"] = math.nan
    if len(x) >= 3 and np.ptp(x) > 0:
        from scipy import stats

        out["skew"] = float(stats.skew(x, bias=False))
    skewed = math.isfinite(out["skew"]) and abs(out["skew"]) > SKEW_LIMIT
    if len(x) >= 2 and (len(x) < BOOTSTRAP_BELOW_N or skewed):
        out["boot_low"], out["boot_high"] = bootstrap_ci(x, confidence)
        out["ci_method"] = "bootstrap"
    else:
        out["boot_low"] = out["boot_high"] = math.nan
        out["ci_method"] = "t"
    if len(x) >= 2 and out["std"] == 0:  # a constant sample: the CI is the value itself
        out["ci_low"] = out["ci_high"] = out["mean"]
    elif len(x) >= 2 and (scale if isinstance(scale, str) else scale.name) != "real":
        out["ci_low"], out["ci_high"] = mean_ci_in_scale(x, scale, confidence)
    return out


def mean_ci_in_scale(values, scale: Scale | str = "real", confidence: float = 0.95):
    """(low, high): the t-interval of the mean on ``scale``'s transformed values, mapped
    back, so it stays inside the scale. A constant sample gives (value, value); fewer than
    two values NaNs. A 2-D array is one sample per row (arrays of bounds).

    >>> low, high = mean_ci_in_scale([0.97, 0.99, 0.999], "unit"); 0 < low < high < 1
    True
    """
    from scipy import stats

    scale = SCALES[scale] if isinstance(scale, str) else scale
    if np.ndim(values) == 2:  # one sample per row (simulations): arrays of bounds
        z = scale.to_z(values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = stats.ttest_1samp(z, 0.0, axis=1).confidence_interval(confidence)
        constant = np.ptp(z, axis=1) == 0
        mean = np.asarray(values, dtype=float).mean(axis=1)
        low = np.where(constant, mean, scale.from_z(ci.low))
        high = np.where(constant, mean, scale.from_z(ci.high))
        return (low, high)
    x = finite_values(values)
    if len(x) < 2:
        return (math.nan, math.nan)
    z = scale.to_z(x)
    if np.ptp(z) == 0:
        return (float(x.mean()), float(x.mean()))
    ci = stats.ttest_1samp(z, 0.0).confidence_interval(confidence)
    low, high = scale.from_z([ci.low, ci.high])
    return (float(low), float(high))
