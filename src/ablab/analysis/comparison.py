"""One comparison of two variants on one outcome, and how a family of them is decided.

:class:`Comparison` holds the per-seed values compared and what the tests made of them;
:func:`measure` is the one place a pair of samples becomes a test result and P(A > B)
(the fixed-seed comparisons of :mod:`ablab.analysis.compare` and the group-sequential
looks of :mod:`ablab.analysis.sequential` both use it); :func:`decide_family` applies Holm,
the equivalence tests and power to a family (one factor × metric).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ablab.analysis.outcomes import Outcome, difference_scale_of, outcome_of
from ablab.analysis.power import detectable_difference, seeds_needed
from ablab.analysis.stats import (
    ALPHA,
    TwoSample,
    compare_samples,
    decision_levels,
    holm,
    probability_of_improvement,
    seeds_to_resolve,
)


def measure(xa, xb, paired: bool, spec: Outcome) -> dict:
    """The test of ``xa`` against ``xb`` on the outcome's difference scale and P(A > B)
    with its bootstrap CI: the fields of a :class:`Comparison` they fill."""
    result = compare_samples(xa, xb, paired=paired, scale=difference_scale_of(spec))
    poi, poi_low, poi_high = probability_of_improvement(
        xa, xb, higher_is_better=spec.higher_is_better
    )
    return {"result": result, "poi": poi, "poi_low": poi_low, "poi_high": poi_high}


@dataclass
class Comparison:
    """Variant a vs variant b on one metric (difference = mean a − mean b)."""

    factor: str
    metric: str
    stratum: str  # "dataset=moons" (the other factors' levels), "" when none
    level_a: str
    level_b: str
    variant_a: str
    variant_b: str
    result: TwoSample
    p_holm: float = math.nan
    family_size: int = 1
    #: the level of the Holm step that decided this comparison (α/(m − j)); the decision
    #: interval below is the (1 − level) interval and excludes 0 exactly when Holm rejects
    level: float = math.nan
    decision_low: float = math.nan
    decision_high: float = math.nan
    #: equivalence (two one-sided tests) within ±margin, Holm-corrected over the family
    margin: float = math.nan
    p_equivalence: float = math.nan
    p_equivalence_holm: float = math.nan
    equivalence_level: float = math.nan
    equivalence_low: float = math.nan  # the (1 − 2·level) interval TOST decides with
    equivalence_high: float = math.nan
    #: power with the current seeds (undecided comparisons)
    detectable: float = math.nan  # smallest difference detected at 80 % power
    seeds_needed: int | None = None  # seeds per variant to decide the observed difference
    #: P(A > B) (ties half) with its bootstrap CI; "better" in the metric's direction
    poi: float = math.nan
    poi_low: float = math.nan
    poi_high: float = math.nan
    #: the per-seed values compared (paired: the shared seeds, in seed order)
    seeds: list[int] = field(default_factory=list)
    values_a: list[float] = field(default_factory=list)
    values_b: list[float] = field(default_factory=list)
    #: group-sequential analysis: the look that decided (1-based) and the looks planned
    look: int | None = None
    looks: int | None = None
    alpha: float = ALPHA
    #: the outcome compared (direction, range, unit, family); from ``metric`` when not given
    spec: Outcome | None = None
    #: the levels whose finished runs record no value of this outcome (a dead-unit
    #: fraction of a net without ReLU-like layers): the comparison does not apply
    not_applicable: list[str] = field(default_factory=list)
    #: the factor is a treatment whose levels are tested on different data
    different_data: bool = False

    def __post_init__(self):
        if self.spec is None:
            self.spec = outcome_of(self.metric)

    @property
    def higher_is_better(self) -> bool:
        return self.spec.higher_is_better

    @property
    def identical(self) -> bool:
        """Both levels gave the same value in every shared seed (paired, ≥ 2 seeds)."""
        return (
            self.paired and len(self.values_a) >= 2
            and all(a == b for a, b in zip(self.values_a, self.values_b, strict=True))
        )

    @property
    def zero_spread(self) -> bool:
        """Tested, but without spread to measure: every shared seed gives the same
        difference (paired), or each side the same value in every run (Welch), up to
        rounding. No t-interval or effect size then; an exact test's smallest p decides."""
        scaled = self.result.scaled
        return self.testable and scaled is not None and scaled.se == 0

    @property
    def testable(self) -> bool:
        return math.isfinite(self.result.p) and not self.not_applicable

    @property
    def ci_excludes_zero(self) -> bool:
        """The decision interval (at the Holm step's level) excludes 0."""
        low, high = self.decision_low, self.decision_high
        return math.isfinite(low) and (low > 0 or high < 0)

    @property
    def significant(self) -> bool:
        """Holm rejects "no difference": the decision interval excludes 0 (which is the
        same as p < the step's level, and as Holm-adjusted p < alpha)."""
        return self.testable and self.ci_excludes_zero

    @property
    def equivalent(self) -> bool:
        """Not a winner, and the TOST interval lies inside ±margin (Holm-corrected)."""
        low, high = self.equivalence_low, self.equivalence_high
        inside = (
            math.isfinite(self.margin) and math.isfinite(low)
            and -self.margin < low and high < self.margin
        )
        return self.testable and not self.significant and inside

    @property
    def outcome(self) -> str:
        """"beats", "equivalent", "undecided", "not applicable" or "untestable"."""
        if self.not_applicable:
            return "not applicable"
        if not self.testable:
            return "untestable"
        if self.significant:
            return "beats"
        if self.equivalent or self.identical:
            return "equivalent"
        return "undecided"

    @property
    def decided(self) -> bool:
        return self.outcome in ("beats", "equivalent")

    @property
    def paired(self) -> bool:
        return self.result.test == "paired t"

    @property
    def winner(self) -> str | None:
        """The better level when the difference is significant."""
        if not self.significant:
            return None
        a_higher = self.result.diff > 0
        return self.level_a if a_higher == self.higher_is_better else self.level_b

    def on_first_seeds(self, n: int) -> Comparison:
        """A copy of this comparison made on its first ``n`` values (seed order): the
        comparison as a look of a group-sequential design saw it."""
        xa, xb = list(self.values_a[:n]), list(self.values_b[:n])
        return dataclasses.replace(
            self, seeds=self.seeds[:n], values_a=xa, values_b=xb,
            **measure(xa, xb, self.paired, self.spec),
        )

    @property
    def in_noise(self) -> bool:
        """Not decided, and the difference is smaller than the seed-to-seed std or its CI
        includes 0. A decided difference is never "in the noise": a paired test can
        resolve a difference smaller than the seed-to-seed std, and the verdict says
        "beats" then (the warning must not contradict it)."""
        r = self.result
        small = math.isfinite(r.noise_std) and abs(r.diff) < r.noise_std
        return self.testable and not self.significant and (small or not self.ci_excludes_zero)


@dataclass
class Ranking:
    """Levels of one factor within one stratum, best first, with letters: levels that
    share a letter are not distinguishable (Holm-adjusted comparisons)."""

    factor: str
    metric: str
    stratum: str
    levels: list[str]
    means: list[float]
    letters: list[str]
    ns: list[int] = field(default_factory=list)

    def groups(self) -> list[list[str]]:
        """Tied groups, one per letter, in rank order."""
        out: dict[str, list[str]] = {}
        for level, letters in zip(self.levels, self.letters, strict=True):
            for letter in letters:
                out.setdefault(letter, []).append(level)
        return [out[k] for k in sorted(out)]


def decide_family(
    comparisons: list[Comparison], alpha: float = ALPHA, margin: float | None = None,
    power: bool = True,
) -> None:
    """Holm over the family (one factor × metric), in place: adjusted p-values, each
    comparison's decision level and interval; equivalence by two one-sided tests (TOST,
    Schuirmann 1987) at the same alpha, Holm-corrected over the family; for undecided
    ones the detectable difference and the seeds needed (statsmodels' power)."""
    adjusted = holm([c.result.p for c in comparisons])
    levels = decision_levels([c.result.p for c in comparisons], alpha)
    family = sum(1 for c in comparisons if c.testable)
    for c, p, level in zip(comparisons, adjusted, levels, strict=True):
        c.p_holm, c.family_size, c.level, c.alpha = p, family, level, alpha
        scaled = c.result.scaled
        if scaled is not None and math.isfinite(level):
            c.decision_low, c.decision_high = scaled.interval(1 - level)
            if scaled.se == 0 and c.decision_low == c.decision_high:
                c.decision_low = c.decision_high = c.result.diff
    use_margin = margin if margin is not None else math.nan
    for c in comparisons:
        c.margin = use_margin if c.spec.has_margin else math.nan
        scaled = c.result.scaled
        c.p_equivalence = (
            scaled.p_equivalence(c.margin)
            if scaled is not None and math.isfinite(c.margin) else math.nan
        )
    eq_adjusted = holm([c.p_equivalence for c in comparisons])
    eq_levels = decision_levels([c.p_equivalence for c in comparisons], alpha)
    for c, p, level in zip(comparisons, eq_adjusted, eq_levels, strict=True):
        c.p_equivalence_holm, c.equivalence_level = p, level
        scaled = c.result.scaled
        if scaled is not None and math.isfinite(level):
            c.equivalence_low, c.equivalence_high = scaled.interval(1 - 2 * level)
            if scaled.se == 0 and c.equivalence_low == c.equivalence_high:
                c.equivalence_low = c.equivalence_high = c.result.diff
    if power:
        for c in comparisons:
            add_power(c)


def add_power(c: Comparison) -> None:
    """For an undecided comparison: the smallest difference its seeds detect at 80 %
    power and the seeds needed for the observed difference, at its decision level. With
    zero spread there is no power to speak of: the seeds needed are those at which the
    exact test (sign test when paired) could decide, were every seed to agree again."""
    if c.outcome != "undecided":
        return
    if c.zero_spread:  # no noise to power a t-test with: the exact test's seeds decide
        c.detectable = math.nan
        c.seeds_needed = seeds_to_resolve(c.level, c.paired) if c.result.diff != 0 else None
        return
    n = min(c.result.n_a, c.result.n_b)
    c.detectable = detectable_difference(c.result.diff_std, n, c.level, c.paired)
    c.seeds_needed = seeds_needed(c.result.diff, c.result.diff_std, c.level, c.paired)
