"""Effect sizes of two samples: Cohen's d (pooled std), d_z (paired differences) and the
probability of improvement P(A > B)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from ablab.analysis.tables import constant, finite_values


def cohens_d(a, b) -> float:
    """Cohen's d with the pooled standard deviation: (mean a − mean b) / s_pooled.
    ±inf when both samples are constant and differ, NaN when undefined.

    >>> round(cohens_d([1, 2, 3], [2, 3, 4]), 3)
    -1.0
    """
    a, b = finite_values(a), finite_values(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    diff = a.mean() - b.mean()
    if constant(a) and constant(b):  # rounding noise is no spread to measure d in
        return signed_ratio(diff, 0.0)
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    return signed_ratio(diff, math.sqrt(pooled))


def cohens_dz(differences) -> float:
    """Cohen's d_z for paired samples: mean of the differences / their std; ±inf when the
    differences have zero spread (equal up to rounding) and are not 0.

    >>> round(cohens_dz([1.0, 2.0, 3.0]), 3)
    2.0
    """
    d = finite_values(differences)
    if len(d) < 2:
        return math.nan
    if constant(d):  # every seed the same difference, up to rounding: zero spread
        return signed_ratio(d.mean(), 0.0)
    return signed_ratio(d.mean(), d.std(ddof=1))


def signed_ratio(num: float, den: float) -> float:
    """num / den; with den = 0: 0 when num is 0, else ±inf."""
    if den > 0:
        return float(num / den)
    if num == 0:
        return 0.0
    return math.copysign(math.inf, num)


def probability_of_improvement(
    a, b, higher_is_better: bool = True, confidence: float = 0.95, n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """P(A > B): the probability that a run of A beats a run of B (ties count half) — the
    Mann–Whitney U statistic divided by n_a·n_b, as in Bouthillier et al. (2021) and
    rliable (Agarwal et al., 2021) — with a percentile bootstrap CI (``scipy.stats.bootstrap``,
    resampling each side independently, seeded). Returns (estimate, low, high).

    >>> probability_of_improvement([0.9, 0.91, 0.92], [0.8, 0.81, 0.82])[0]
    1.0
    """
    from scipy import stats

    x, y = finite_values(a), finite_values(b)
    if not higher_is_better:
        x, y = -x, -y
    if len(x) == 0 or len(y) == 0:
        return (math.nan, math.nan, math.nan)

    # Each value as its code: its index among the pooled sample's distinct values (sorted).
    # The bootstrap resamples the codes, so a resample holds codes already (nothing to
    # search per resampled value) and ranks, ties included, are those of the values.
    pooled, codes = np.unique(np.concatenate([x, y]), return_inverse=True)
    cx, cy = codes[: len(x)], codes[len(x):]
    k = len(pooled)

    def statistic(u, v, axis=-1):
        # U = the wins of u over v (ties: half a win), from counts: per resample count v's
        # codes at each pooled value; a code of u then wins over the v's below it and half
        # of those equal. Integer counts: the same number exactly as from average ranks or
        # every pair, in O(n + distinct values) per resample without sorting each one.
        u = np.moveaxis(np.asarray(u, dtype=np.intp), axis, -1)
        v = np.moveaxis(np.asarray(v, dtype=np.intp), axis, -1)
        n_u, n_v = u.shape[-1], v.shape[-1]
        lead = v.shape[:-1]
        rows = np.arange(int(np.prod(lead, dtype=np.int64))).reshape(lead + (1,)) * k
        counts = np.bincount((v + rows).ravel(), minlength=rows.size * k).reshape(lead + (k,))
        below = np.cumsum(counts, axis=-1) - counts  # v's values strictly below each value
        score = 2 * below + counts  # twice the wins of one u at each value (ties: half)
        wins2 = np.take_along_axis(score, u, axis=-1).sum(axis=-1)
        return (wins2 / 2) / (n_u * n_v)

    estimate = float(statistic(cx, cy))
    if len(x) < 2 or len(y) < 2:
        return (estimate, math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (cx, cy), statistic, vectorized=True, paired=False, confidence_level=confidence,
            n_resamples=n_resamples, method="percentile",
            random_state=np.random.default_rng(seed),
        )
    return (estimate, float(res.confidence_interval.low), float(res.confidence_interval.high))
