"""Tests of two samples (paired t or Welch, on the difference's scale, with a
distribution-free floor for constant differences), Holm's correction with the level of the
step that decided each hypothesis, and compact letter displays."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ablab.analysis.effect_sizes import cohens_d, cohens_dz, signed_ratio
from ablab.analysis.scales import SCALES, Scale
from ablab.analysis.tables import CONSTANT_TOL, finite_values

ALPHA = 0.05


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
    a, b = finite_values(a), finite_values(b)
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
    if scaled.se == 0:  # zero spread (within CONSTANT_TOL): no noise to measure an effect in
        effect, diff_std = signed_ratio(diff, 0.0), 0.0
    statistic = scaled.estimate / scaled.se if scaled.se > 0 else signed_ratio(diff, 0.0)
    low, high = scaled.interval(confidence)
    if scaled.se == 0 and low == high:
        low = high = diff
    return TwoSample(
        "paired t" if paired else "Welch t", n_a, n_b, mean_a, mean_b, diff, low, high,
        float(statistic), scaled.p_value(), effect, effect_name, noise, scaled, diff_std,
    )


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
    #: n_a)); the interval is the point only at levels above it, else there is none (NaN).
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
            if 1 - confidence <= self.floor_p:  # the exact test cannot resolve this level:
                return (math.nan, math.nan)  # no interval (not the whole scale)
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
            t = signed_ratio(delta, 0.0)
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




def sign_test_floor(n: int) -> float:
    """The smallest two-sided p of the sign test on ``n`` paired differences (all of one
    sign): ``scipy.stats.binomtest(n, n).pvalue`` = 2·0.5^n — what constant per-seed
    differences can show at most, whatever their size.

    >>> sign_test_floor(3), sign_test_floor(6)
    (0.25, 0.03125)
    """
    from scipy import stats

    return float(stats.binomtest(n, n, 0.5).pvalue) if n > 0 else 1.0


def rank_test_floor(n_a: int, n_b: int) -> float:
    """The smallest two-sided p of the exact rank test on two constant samples that
    differ: 2 / C(n_a + n_b, n_a).

    >>> rank_test_floor(3, 3)
    0.1
    """
    return min(1.0, 2 / math.comb(n_a + n_b, n_a))


#: seeds_to_resolve looks no further than this
MAX_EXACT_SEEDS = 64


def seeds_to_resolve(alpha: float, paired: bool) -> int | None:
    """Seeds per variant at which constant per-seed values (zero spread) decide at
    ``alpha``: the sign test's (paired) or the exact rank test's smallest p falls below
    it. None when ``alpha`` is not a level in (0, 1).

    >>> seeds_to_resolve(0.05, paired=True), seeds_to_resolve(0.05, paired=False)
    (6, 4)
    """
    if not (math.isfinite(alpha) and 0 < alpha < 1):
        return None
    for n in range(2, MAX_EXACT_SEEDS + 1):
        floor = sign_test_floor(n) if paired else rank_test_floor(n, n)
        if floor < alpha:
            return n
    return None


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
        floor = rank_test_floor(len(a), len(b))
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
