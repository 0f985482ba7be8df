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
from typing import Any

import numpy as np

from ablab.analysis.tables import mean_ci

# scipy.stats (about a second to import) is imported in the functions that compute with
# it, not with this module: results.csv and summary.csv of a study with no finished run
# yet (the runner writes them at the start) never need it.

__all__ = [
    "ALPHA",
    "SCALES",
    "Scale",
    "ScaledT",
    "decision_levels",
    "difference_scale",
    "mean_ci_in_scale",
    "metric_scale",
    "probability_of_improvement",
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
    x = _clean(values)
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
    #: the test on the difference's scale: intervals at other levels, TOST, power inputs
    scaled: ScaledT | None = None
    diff_std: float = math.nan  # std of the paired differences (paired) else pooled-ish


def compare_samples(
    a, b, paired: bool, confidence: float = 0.95, scale: Scale | str = "real"
) -> TwoSample:
    """Difference of means with its CI and a t-test: paired (a[i] vs b[i], same seed; on
    the real scale exactly ``scipy.stats.ttest_rel``) or Welch's
    (``ttest_ind(equal_var=False)``). On a bounded difference ``scale`` (``"difference"``
    for accuracies) the test and the interval are made on the transformed scale, so the CI
    stays in [−1, 1]. With fewer than two values on a side there is no test (p = NaN).
    Constant differences (zero variance) give p = 1 when the difference is 0, else the
    smallest p of a distribution-free test (:attr:`ScaledT.floor_p`: the sign test for
    paired samples), not the t-test's p = 0.

    >>> r = compare_samples([0.9, 0.91, 0.92], [0.8, 0.82, 0.81], paired=True)
    >>> r.test, round(r.diff, 3)
    ('paired t', 0.1)
    """
    scale = SCALES[scale] if isinstance(scale, str) else scale
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
    if n_a < 2 or n_b < 2:
        return TwoSample(
            "none", n_a, n_b, mean_a, mean_b, diff, math.nan, math.nan, math.nan, math.nan,
            math.nan, "d", noise,
        )
    if paired:
        scaled, _ = paired_t(a, b, scale)
        effect, effect_name = cohens_dz(a - b), "d_z"
        diff_std = float((a - b).std(ddof=1))
    else:
        scaled, _ = welch_t(a, b, scale)
        effect, effect_name = cohens_d(a, b), "d"
        diff_std = float(math.sqrt(a.var(ddof=1) + b.var(ddof=1)))
    statistic = scaled.estimate / scaled.se if scaled.se > 0 else _ratio(diff, 0.0)
    low, high = scaled.interval(confidence)
    if scaled.se == 0 and low == high:
        low = high = diff
    return TwoSample(
        "paired t" if paired else "Welch t", n_a, n_b, mean_a, mean_b, diff, low, high,
        float(statistic), scaled.p_value(), effect, effect_name, noise, scaled, diff_std,
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


# ---------------------------------------------------------------- intervals inside a scale
#
# A bounded metric gets its interval on a scale where it is unbounded: the t-interval of
# the transformed values (``scipy.stats.ttest_1samp(...).confidence_interval()``), mapped
# back. So an accuracy's interval lies in [0, 1], a loss's in (0, ∞) and a difference of
# accuracies in [−1, 1] by construction, never by clipping.

#: Values at a bound of [0, 1] (or ±1 for differences) are moved this far inside before
#: the logit / atanh transform (a continuity correction: 0.1 percentage point).
BOUND_CORRECTION = 1e-3


@dataclass(frozen=True)
class Scale:
    """A metric's range and the transform that makes it unbounded."""

    name: str
    low: float
    high: float
    forward: object  # callable: values → transformed values (array in, array out)
    inverse: object  # callable: transformed → values
    method: str  # how its intervals are made, for the methods note

    def to_z(self, x) -> np.ndarray:
        return np.asarray(self.forward(np.asarray(x, dtype=float)), dtype=float)

    def from_z(self, z) -> np.ndarray:
        return np.asarray(self.inverse(np.asarray(z, dtype=float)), dtype=float)


def _logit(x):
    from scipy.special import logit

    return logit(np.clip(x, BOUND_CORRECTION, 1 - BOUND_CORRECTION))


def _expit(z):
    from scipy.special import expit

    return expit(z)


def _log_positive(x):
    x = np.asarray(x, dtype=float)
    positive = x[x > 0]
    floor = positive.min() / 2 if positive.size else 1e-12
    return np.log(np.where(x > 0, x, floor))


def _atanh(x):
    return np.arctanh(np.clip(x, -1 + BOUND_CORRECTION, 1 - BOUND_CORRECTION))


def _identity(x):
    return np.asarray(x, dtype=float)


SCALES: dict[str, Scale] = {
    "unit": Scale(
        "unit", 0.0, 1.0, _logit, _expit,
        "t-interval on the logit scale, back-transformed (values at 0 or 1 moved 0.001 inside)",
    ),
    "positive": Scale(
        "positive", 0.0, math.inf, _log_positive, np.exp,
        "t-interval on the log scale, back-transformed (zeros replaced by half the smallest "
        "positive value)",
    ),
    "difference": Scale(
        "difference", -1.0, 1.0, _atanh, np.tanh,
        "paired t on the atanh (Fisher z) scale of the per-seed differences, "
        "back-transformed with tanh (differences at ±1 moved 0.001 inside)",
    ),
    "real": Scale("real", -math.inf, math.inf, _identity, _identity, "t-interval"),
}

#: The scale of a difference between two values on a scale.
DIFFERENCE_SCALES = {"unit": "difference", "positive": "real", "difference": "real", "real": "real"}
#: The named scales by their range.
_BY_RANGE = {(0.0, 1.0): "unit", (0.0, math.inf): "positive", (-1.0, 1.0): "difference",
             (-math.inf, math.inf): "real"}


def _bounded(low: float, high: float) -> Scale:
    """[low, high]: atanh of the value mapped onto [−1, 1] (values at a bound moved
    0.1 % of the width inside)."""
    mid, half = (low + high) / 2, (high - low) / 2

    def forward(x):
        return _atanh((np.asarray(x, dtype=float) - mid) / half)

    def inverse(z):
        return mid + half * np.tanh(z)

    return Scale(
        f"[{low:g}, {high:g}]", low, high, forward, inverse,
        f"t-interval on the atanh scale of the values mapped from [{low:g}, {high:g}] onto "
        "[−1, 1], back-transformed",
    )


def _above(low: float) -> Scale:
    """[low, ∞): log of the value above ``low``."""

    def forward(x):
        return _log_positive(np.asarray(x, dtype=float) - low)

    def inverse(z):
        return low + np.exp(z)

    return Scale(f"[{low:g}, ∞)", low, math.inf, forward, inverse,
                 f"t-interval on the log scale of the value above {low:g}, back-transformed")


def _below(high: float) -> Scale:
    """(−∞, high]: −log of the distance to ``high`` (increasing, so intervals keep order)."""

    def forward(x):
        return -_log_positive(high - np.asarray(x, dtype=float))

    def inverse(z):
        return high - np.exp(-np.asarray(z, dtype=float))

    return Scale(f"(−∞, {high:g}]", -math.inf, high, forward, inverse,
                 f"t-interval on the −log scale of the distance to {high:g}, back-transformed")


def scale_for_range(low: float, high: float) -> Scale:
    """The scale of values in [``low``, ``high``] (either end may be infinite): accuracies
    [0, 1] use the logit, [0, ∞) the log, other ranges their own transform, so that every
    interval made there stays inside the range.

    >>> scale_for_range(0, 1).name, scale_for_range(-math.inf, 1).high
    ('unit', 1.0)
    """
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"a range needs low < high, got [{low:g}, {high:g}]")
    name = _BY_RANGE.get((low, high))
    if name is None:
        if math.isfinite(low) and math.isfinite(high):
            scale = _bounded(low, high)
        elif math.isfinite(low):
            scale = _above(low)
        else:
            scale = _below(high)
        name = scale.name
        SCALES.setdefault(name, scale)  # ScaledT finds its scale by name
    return SCALES[name]


def difference_scale_for(scale: Scale) -> Scale:
    """The scale of a difference of two values on ``scale``: a range of width w gives
    differences in [−w, w]; a half-open or open range unbounded differences."""
    if scale.name in DIFFERENCE_SCALES and scale.name != "difference":
        return SCALES[DIFFERENCE_SCALES[scale.name]]
    width = scale.high - scale.low
    if math.isfinite(width):
        return scale_for_range(-width, width)
    return SCALES["real"]


def metric_scale(metric) -> Scale:
    """The scale of ``metric``'s values (a name from :mod:`ablab.analysis.outcomes` or an
    ``Outcome``): ``metric_scale("test_accuracy").name == "unit"``."""
    from ablab.analysis.outcomes import outcome_of, scale_of

    return scale_of(outcome_of(metric))


def difference_scale(metric) -> Scale:
    """The scale of a difference of two ``metric`` values (accuracies: [−1, 1])."""
    from ablab.analysis.outcomes import difference_scale_of, outcome_of

    return difference_scale_of(outcome_of(metric))


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
    x = _clean(values)
    if len(x) < 2:
        return (math.nan, math.nan)
    z = scale.to_z(x)
    if np.ptp(z) == 0:
        return (float(x.mean()), float(x.mean()))
    ci = stats.ttest_1samp(z, 0.0).confidence_interval(confidence)
    low, high = scale.from_z([ci.low, ci.high])
    return (float(low), float(high))


# ---------------------------------------------------------------- a t-test on a scale


@dataclass(frozen=True)
class ScaledT:
    """A t-statistic's ingredients on a transformed scale (estimate, standard error,
    degrees of freedom), from which intervals at any level and one- or two-sided p-values
    follow with ``scipy.stats.t``. For paired samples they are those of
    ``scipy.stats.ttest_1samp`` on the transformed per-seed differences (the tests check
    that the intervals equal its ``confidence_interval``)."""

    estimate: float  # on the transformed scale
    se: float
    df: float
    scale: str = "real"
    #: With zero variance (constant per-seed differences, or two constant samples) the
    #: t-test says p = 0, which with 3 seeds of a small test set is overconfident. Then a
    #: distribution-free test decides instead: the smallest two-sided p it can give
    #: (sign test, paired: 2·0.5^n; exact rank test, two constant samples: 2/C(n_a+n_b,
    #: n_a)); the interval is the point only at levels above it, else the whole scale.
    floor_p: float = 0.0

    @property
    def _scale(self) -> Scale:
        return SCALES[self.scale]

    def interval(self, confidence: float) -> tuple[float, float]:
        """The two-sided ``confidence`` interval, on the original scale."""
        if not math.isfinite(self.estimate):
            return (math.nan, math.nan)
        if self.se == 0:
            low = high = self.estimate
            if 1 - confidence <= self.floor_p:  # the exact test cannot resolve this level
                low, high = -math.inf, math.inf
        else:
            from scipy import stats

            low, high = stats.t.interval(confidence, self.df, loc=self.estimate, scale=self.se)
        a, b = self._scale.from_z([low, high])
        return (float(a), float(b))

    def p_value(self, null: float = 0.0, alternative: str = "two-sided") -> float:
        """p of H0: estimate = ``null`` (``null`` on the original scale)."""
        from scipy import stats

        if not math.isfinite(self.estimate):
            return math.nan
        z0 = float(self._scale.to_z([null])[0]) if null != 0 else 0.0
        delta = self.estimate - z0
        if self.se == 0:
            t = _ratio(delta, 0.0)
        else:
            t = delta / self.se
        one_sided_floor = self.floor_p / 2
        if alternative == "greater":
            if self.se:
                return float(stats.t.sf(t, self.df))
            return 1.0 if delta <= 0 else one_sided_floor
        if alternative == "less":
            if self.se:
                return float(stats.t.cdf(t, self.df))
            return 1.0 if delta >= 0 else one_sided_floor
        if self.se == 0:
            return 1.0 if delta == 0 else min(1.0, self.floor_p)
        return float(2 * stats.t.sf(abs(t), self.df))

    def p_equivalence(self, margin: float) -> float:
        """Two one-sided tests (Schuirmann 1987) of |difference| < ``margin``: the larger
        of the two one-sided p-values."""
        if not (math.isfinite(margin) and margin > 0):
            return math.nan
        return max(self.p_value(-margin, "greater"), self.p_value(margin, "less"))

    def effect_z(self) -> float:
        return self.estimate


#: Per-seed values closer than this are the same value (accuracies are multiples of
#: 1/n_test; 0.90 − 0.70 and 0.91 − 0.71 differ only by rounding): a constant sample.
CONSTANT_TOL = 1e-12


def sign_test_floor(n: int) -> float:
    """The smallest two-sided p of the sign test on ``n`` paired differences (all of one
    sign): ``scipy.stats.binomtest(n, n).pvalue`` = 2·0.5^n — what constant per-seed
    differences can show at most, whatever their size.

    >>> sign_test_floor(3), sign_test_floor(6)
    (0.25, 0.03125)
    """
    from scipy import stats

    return float(stats.binomtest(n, n, 0.5).pvalue) if n > 0 else 1.0


def paired_t(a, b, scale: Scale | str = "real") -> tuple[ScaledT, Any]:
    """The paired t-test of a − b on ``scale`` (``scipy.stats.ttest_1samp`` on the
    transformed differences); returns (ScaledT, scipy's result or None when constant)."""
    from scipy import stats

    scale = SCALES[scale] if isinstance(scale, str) else scale
    d = scale.to_z(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    n = len(d)
    est = float(d.mean())
    if np.ptp(d) <= CONSTANT_TOL:  # constant differences: the sign test's smallest p decides
        return ScaledT(est, 0.0, n - 1, scale.name, floor_p=sign_test_floor(n)), None
    res = stats.ttest_1samp(d, 0.0)
    se = float(d.std(ddof=1) / math.sqrt(n))
    return ScaledT(est, se, float(res.df), scale.name), res


def welch_t(a, b, scale: Scale | str = "real") -> tuple[ScaledT, Any]:
    """Welch's t of mean a − mean b (``scipy.stats.ttest_ind(equal_var=False)`` gives the
    standard error and degrees of freedom); on a bounded difference scale the estimate and
    its standard error are carried to the transformed scale by the delta method."""
    from scipy import stats

    scale = SCALES[scale] if isinstance(scale, str) else scale
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    se = float(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    if se == 0 or (np.ptp(a) <= CONSTANT_TOL and np.ptp(b) <= CONSTANT_TOL):  # rank test
        floor = min(1.0, 2 / math.comb(len(a) + len(b), len(a)))
        return ScaledT(
            float(scale.to_z([diff])[0]), 0.0, len(a) + len(b) - 2, scale.name, floor_p=floor
        ), None
    res = stats.ttest_ind(a, b, equal_var=False)
    z = float(scale.to_z([diff])[0])
    # d z / d diff at diff: numerically, so any registered scale works
    h = 1e-6
    slope = float((scale.to_z([diff + h]) - scale.to_z([diff - h]))[0] / (2 * h))
    if not math.isfinite(slope) or slope <= 0:
        slope = 1.0
    return ScaledT(z, se * slope, float(res.df), scale.name), res


# ---------------------------------------------------------------- Holm, consistently


def decision_levels(pvalues, alpha: float = ALPHA) -> list[float]:
    """Per hypothesis, the level of the Holm (1979) step that decided it: a hypothesis the
    step-down rejects gets α/(m − j) of its own step j; every other one gets the level of
    the step where the procedure stopped. So "p < level" is exactly Holm's rejection, and
    the (1 − level) interval excludes 0 exactly when Holm rejects — the printed interval
    agrees with the decision by construction. NaN p-values get NaN.

    >>> decision_levels([0.001, 0.02, 0.5])
    [0.016666666666666666, 0.025, 0.05]
    """
    p = [float(v) if v is not None else math.nan for v in pvalues]
    index = sorted((i for i, v in enumerate(p) if math.isfinite(v)), key=lambda i: p[i])
    m = len(index)
    out = [math.nan] * len(p)
    stopped: float | None = None
    for j, i in enumerate(index):
        level = alpha / (m - j)
        if stopped is None and p[i] < level:
            out[i] = level
        else:
            if stopped is None:
                stopped = level
            out[i] = stopped
    return out


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

    x, y = _clean(a), _clean(b)
    if not higher_is_better:
        x, y = -x, -y
    if len(x) == 0 or len(y) == 0:
        return (math.nan, math.nan, math.nan)

    pooled = np.unique(np.concatenate([x, y]))  # every value a resample can hold

    def statistic(u, v, axis=-1):
        # U = the wins of u over v (ties: half a win), from counts: a resample holds only
        # values of the pooled sample, so per resample count v's values at each pooled
        # value; a value of u then wins over the v's below it and half of those equal.
        # Integer counts: the same number exactly as from average ranks or every pair,
        # in O(n + distinct values) per resample without sorting each one.
        u = np.moveaxis(np.asarray(u, dtype=float), axis, -1)
        v = np.moveaxis(np.asarray(v, dtype=float), axis, -1)
        n_u, n_v = u.shape[-1], v.shape[-1]
        iu = np.minimum(np.searchsorted(pooled, u), len(pooled) - 1)
        iv = np.minimum(np.searchsorted(pooled, v), len(pooled) - 1)
        if not (np.array_equal(pooled[iu], u) and np.array_equal(pooled[iv], v)):
            ranks = stats.rankdata(np.concatenate([u, v], axis=-1), axis=-1)  # other values
            wins = ranks[..., :n_u].sum(axis=-1) - n_u * (n_u + 1) / 2
            return wins / (n_u * n_v)
        lead = v.shape[:-1]
        k = len(pooled)
        rows = np.arange(int(np.prod(lead, dtype=np.int64))).reshape(lead + (1,)) * k
        counts = np.bincount((iv + rows).ravel(), minlength=rows.size * k).reshape(lead + (k,))
        below = np.cumsum(counts, axis=-1) - counts  # v's values strictly below each value
        score = 2 * below + counts  # twice the wins of one u at each value (ties: half)
        wins2 = np.take_along_axis(score, iu, axis=-1).sum(axis=-1)
        return (wins2 / 2) / (n_u * n_v)

    estimate = float(statistic(x, y))
    if len(x) < 2 or len(y) < 2:
        return (estimate, math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            (x, y), statistic, vectorized=True, paired=False, confidence_level=confidence,
            n_resamples=n_resamples, method="percentile",
            random_state=np.random.default_rng(seed),
        )
    return (estimate, float(res.confidence_interval.low), float(res.confidence_interval.high))
