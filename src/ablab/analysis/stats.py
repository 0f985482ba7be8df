"""Statistics over seeds: summaries with confidence intervals, two-sample comparisons
(paired or Welch), effect sizes, Holm's correction and compact letter displays.

Pure functions of plain numbers; every one agrees with scipy where scipy has the same
thing (the tests check it)::

    >>> describe([0.90, 0.92, 0.91])["ci_method"]
    'bootstrap'
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ablab.analysis.tables import mean_ci

__all__ = [
    "ALPHA",
    "TwoSample",
    "bootstrap_ci",
    "cohens_d",
    "cohens_dz",
    "compact_letters",
    "compare_samples",
    "describe",
    "holm",
    "mean_ci",
]

ALPHA = 0.05
#: Samples smaller than this, or with |skewness| above SKEW_LIMIT, also get a bootstrap CI.
BOOTSTRAP_BELOW_N = 5
SKEW_LIMIT = 1.0


def _clean(values) -> np.ndarray:
    return np.asarray(
        [float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float
    )


def bootstrap_ci(
    values, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (``scipy.stats.bootstrap``), seeded so a report
    is reproducible. A constant sample gives ``(mean, mean)``; fewer than 2 values NaNs.

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    x = _clean(values)
    if len(x) < 2:
        return (math.nan, math.nan)
    if np.ptp(x) == 0:
        return (float(x[0]), float(x[0]))
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


def describe(values, confidence: float = 0.95) -> dict[str, float | int | str | None]:
    """n, mean, std, t-based CI, skewness, and a bootstrap CI when the sample is small
    (n < 5) or skewed (|skew| > 1). ``ci_method`` says which CI the report should show
    first: ``"bootstrap"`` when one was computed, else ``"t"``.

    >>> d = describe([1.0, 2.0, 3.0, 4.0, 5.0]); d["ci_method"], round(d["ci_low"], 3)
    ('t', 1.037)
    """
    x = _clean(values)
    out: dict[str, float | int | str | None] = dict(mean_ci(x, confidence))
    out["skew"] = math.nan
    if len(x) >= 3 and np.ptp(x) > 0:
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
    return out


def cohens_d(a, b) -> float:
    """Cohen's d with the pooled standard deviation: (mean a − mean b) / s_pooled.
    ±inf when both samples are constant and differ, NaN when undefined.

    >>> round(cohens_d([1, 2, 3], [2, 3, 4]), 3)
    -1.0
    """
    a, b = _clean(a), _clean(b)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    diff = a.mean() - b.mean()
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    return _ratio(diff, math.sqrt(pooled))


def cohens_dz(differences) -> float:
    """Cohen's d_z for paired samples: mean of the differences / their std.

    >>> round(cohens_dz([1.0, 2.0, 3.0]), 3)
    2.0
    """
    d = _clean(differences)
    if len(d) < 2:
        return math.nan
    return _ratio(d.mean(), d.std(ddof=1))


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return float(num / den)
    if num == 0:
        return 0.0
    return math.copysign(math.inf, num)


@dataclass(frozen=True)
class TwoSample:
    """The comparison of two samples a and b (difference = mean a − mean b)."""

    test: str  # "paired t" | "Welch t" | "none"
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    statistic: float
    p: float
    effect: float  # Cohen's d (Welch) or d_z (paired)
    effect_name: str  # "d" | "d_z"
    noise_std: float  # the larger seed-to-seed std of the two variants


def compare_samples(a, b, paired: bool, confidence: float = 0.95) -> TwoSample:
    """Difference of means with its CI and a t-test: paired (``scipy.stats.ttest_rel`` on
    a[i] vs b[i], same seed) or Welch's (``ttest_ind(equal_var=False)``). With fewer than
    two values on a side there is no test (p = NaN). Constant differences (zero
    variance) give p = 0 when the difference is not 0 and p = 1 when it is.

    >>> r = compare_samples([0.9, 0.91, 0.92], [0.8, 0.82, 0.81], paired=True)
    >>> r.test, round(r.diff, 3)
    ('paired t', 0.1)
    """
    a, b = _clean(a), _clean(b)
    if paired and len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    n_a, n_b = len(a), len(b)
    mean_a = float(a.mean()) if n_a else math.nan
    mean_b = float(b.mean()) if n_b else math.nan
    noise = max(
        [float(s.std(ddof=1)) for s in (a, b) if len(s) >= 2], default=math.nan
    )
    diff = mean_a - mean_b
    nothing = TwoSample(
        "none", n_a, n_b, mean_a, mean_b, diff, math.nan, math.nan, math.nan, math.nan,
        math.nan, "d", noise,
    )
    if n_a < 2 or n_b < 2:
        return nothing
    q = (1 + confidence) / 2
    if paired:
        d = a - b
        se = float(d.std(ddof=1) / math.sqrt(len(d)))
        df = len(d) - 1
        effect, effect_name = cohens_dz(d), "d_z"
        if se > 0:
            res = stats.ttest_rel(a, b)
            statistic, p = float(res.statistic), float(res.pvalue)
    else:
        va, vb = a.var(ddof=1) / n_a, b.var(ddof=1) / n_b
        se = float(math.sqrt(va + vb))
        df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)) if se > 0 else 1.0
        effect, effect_name = cohens_d(a, b), "d"
        if se > 0:
            res = stats.ttest_ind(a, b, equal_var=False)
            statistic, p = float(res.statistic), float(res.pvalue)
    if se == 0:
        statistic = _ratio(diff, 0.0)
        p = 1.0 if diff == 0 else 0.0
        low = high = diff
    else:
        half = float(stats.t.ppf(q, df)) * se
        low, high = diff - half, diff + half
    return TwoSample(
        "paired t" if paired else "Welch t", n_a, n_b, mean_a, mean_b, diff, low, high,
        statistic, p, effect, effect_name, noise,
    )


def holm(pvalues) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order (NaN stays NaN and does not
    count in the family size).

    >>> holm([0.01, 0.02, 0.03, 0.5])
    [0.04, 0.06, 0.06, 0.5]
    """
    p = [float(v) if v is not None else math.nan for v in pvalues]
    index = sorted((i for i, v in enumerate(p) if math.isfinite(v)), key=lambda i: p[i])
    m = len(index)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(index):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = round(running, 12)
    return out


def compact_letters(names: list[str], different: set[frozenset[str]]) -> dict[str, str]:
    """Compact letter display (insert-and-absorb, Piepho 2004): variants sharing a letter
    are not distinguishable; ``different`` holds the pairs that are. ``names`` should be in
    rank order (best first) so the best group gets "a".

    >>> compact_letters(["x", "y", "z"], {frozenset({"x", "z"})})
    {'x': 'a', 'y': 'ab', 'z': 'b'}
    """
    groups: list[set[str]] = [set(names)]
    for pair in sorted(different, key=lambda s: sorted(s)):
        i, j = sorted(pair)
        new: list[set[str]] = []
        for g in groups:
            if i in g and j in g:
                new.extend([g - {j}, g - {i}])
            else:
                new.append(g)
        groups = [g for k, g in enumerate(new) if g and not _absorbed(g, new, k)]
    order = {n: k for k, n in enumerate(names)}
    groups.sort(key=lambda g: sorted(order[n] for n in g))
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = {n: "" for n in names}
    for k, g in enumerate(groups):
        for n in g:
            out[n] += letters[k % 26]
    return {n: "".join(sorted(v)) for n, v in out.items()}


def _absorbed(g: set[str], groups: list[set[str]], k: int) -> bool:
    """True if ``g`` is contained in another group (equal groups: keep the first)."""
    for m, other in enumerate(groups):
        if m == k:
            continue
        if g < other or (g == other and m < k):
            return True
    return False
