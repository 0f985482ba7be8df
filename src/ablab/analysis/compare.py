"""Pairwise comparisons inside each factor, the other factors held equal, and rankings
with groups of variants that cannot be told apart.

For factor ``activation`` in a study that also varies ``dataset``, relu is compared with
sigmoid within dataset=moons and, separately, within dataset=circles. All comparisons of
one factor (and one metric) form a family whose p-values are Holm-corrected together.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from ablab.analysis.outcomes import (
    DEFAULT_PRIMARY,
    DEFAULT_SECONDARY,
    Outcome,
    difference_scale_of,
    outcome_of,
)
from ablab.analysis.power import detectable_difference, seeds_needed
from ablab.analysis.runs import Factor, Variant
from ablab.analysis.stats import (
    ALPHA,
    TwoSample,
    compact_letters,
    compare_samples,
    decision_levels,
    holm,
    probability_of_improvement,
)

#: The default equivalence margin: ±1 percentage point of accuracy.
DEFAULT_MARGIN = 0.01

#: Metrics compared between variants when a study declares none (common yardsticks, never
#: a run's own loss).
COMPARED_METRICS = (DEFAULT_PRIMARY, *DEFAULT_SECONDARY)


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


def _same_data(a: Variant, b: Variant, ignore: tuple[str, ...] = ()) -> bool:
    """Same dataset config, the options in ``ignore`` (a treatment's own dataset options
    that keep the test set) aside."""
    da, db = dict(a.config.get("dataset") or {}), dict(b.config.get("dataset") or {})
    for key in ignore:
        da.pop(key, None)
        db.pop(key, None)
    return da == db


def _paired(a: Variant, b: Variant, metric: str, ignore: tuple[str, ...] = ()) -> bool:
    """Paired by seed: at least 2 seeds finished on both sides and the same data split
    (same dataset config; the split comes from ``split_seed`` or else the run's seed).
    Only the shared seeds are compared (a variant that got more seeds in an adaptive round
    is compared with one that did not on the seeds both have)."""
    sa, sb = a.by_seed(metric), b.by_seed(metric)
    return _same_data(a, b, ignore) and len(set(sa) & set(sb)) >= 2


def paired_values(a: Variant, b: Variant, metric: str, ignore: tuple[str, ...] = ()):
    """(paired, seeds, values of a, values of b): the shared seeds in seed order when
    paired, else every finished value of each side. ``ignore``: dataset options that may
    differ between a pair tested on the same test samples (a treatment's own)."""
    sa, sb = a.by_seed(metric), b.by_seed(metric)
    if _paired(a, b, metric, ignore):
        seeds = sorted(set(sa) & set(sb))
        return True, seeds, [sa[s] for s in seeds], [sb[s] for s in seeds]
    return False, [], list(sa.values()), list(sb.values())


def compare_variants(a: Variant, b: Variant, metric: str | Outcome) -> TwoSample:
    """Paired t-test by seed when the pair allows it, Welch's t-test otherwise; on the
    metric's difference scale (accuracies: atanh, so the CI stays in [−1, 1])."""
    spec = outcome_of(metric)
    paired, _, xa, xb = paired_values(a, b, spec.name)
    return compare_samples(xa, xb, paired=paired, scale=difference_scale_of(spec))


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
    power and the seeds needed for the observed difference, at its decision level."""
    if c.outcome != "undecided":
        return
    n = min(c.result.n_a, c.result.n_b)
    c.detectable = detectable_difference(c.result.diff_std, n, c.level, c.paired)
    c.seeds_needed = seeds_needed(c.result.diff, c.result.diff_std, c.level, c.paired)


def strata(factor: Factor, factors: list[Factor], variants: list[Variant]):
    """Yield (stratum label, {level: variant}) for ``factor``: variants grouped by the
    levels of every other factor."""
    others = [f for f in factors if f is not factor]
    groups: dict[tuple, dict[tuple[str, ...], Variant]] = {}
    labels: dict[tuple, str] = {}
    for v in variants:
        key = tuple(f.level_of(v.values) for f in others)
        labels[key] = ", ".join(f.describe(v.values) for f in others)
        groups.setdefault(key, {})[factor.level_of(v.values)] = v
    for key, members in groups.items():
        ordered = {lv: members[lv] for lv in factor.levels if lv in members}
        yield labels[key], ordered


def compare_factor(
    factor: Factor,
    factors: list[Factor],
    variants: list[Variant],
    metric: str | Outcome,
    margin: float | None = DEFAULT_MARGIN,
    alpha: float = ALPHA,
) -> list[Comparison]:
    """Every pair of levels of ``factor`` within each stratum, Holm-corrected together,
    with equivalence within ±``margin``, power, and P(A > B). A pair where one level's
    finished runs record no value of the outcome is "not applicable" (out of the family)."""
    spec = outcome_of(metric)
    ignore = () if factor.changes_task else tuple(
        p.split(".", 1)[1] for p in factor.paths if p.startswith("dataset.")
    )
    out = []
    for label, members in strata(factor, factors, variants):
        for (la, va), (lb, vb) in itertools.combinations(members.items(), 2):
            paired, seeds, xa, xb = paired_values(va, vb, spec.name, ignore)
            result = compare_samples(xa, xb, paired=paired, scale=difference_scale_of(spec))
            poi = probability_of_improvement(xa, xb, higher_is_better=spec.higher_is_better)
            lacking = [
                factor.level_label(lv) for lv, v, x in ((la, va, xa), (lb, vb, xb))
                if v.done and not x
            ]
            out.append(
                Comparison(
                    factor.name, spec.name, label, factor.level_label(la),
                    factor.level_label(lb), va.label, vb.label, result, poi=poi[0],
                    poi_low=poi[1], poi_high=poi[2], seeds=seeds, values_a=xa, values_b=xb,
                    spec=spec, not_applicable=lacking if spec.family == "diagnostic" else [],
                    different_data=factor.on_different_data,
                )
            )
    decide_family(out, alpha, margin)
    return out


def compare_all(
    factors: list[Factor],
    variants: list[Variant],
    metrics=COMPARED_METRICS,
    margin: float | None = DEFAULT_MARGIN,
    design=None,
) -> list[Comparison]:
    """Comparisons of every factor on every metric (one Holm family per factor × metric;
    ``metrics``: names or :class:`Outcome` s). Factors whose levels are contexts (another
    dataset, unless declared a treatment) are not compared. ``design``: a group-sequential
    design (:class:`ablab.analysis.sequential.Design`) when the study added seeds in rounds;
    its looks and spent alpha then decide."""
    out = [
        c
        for metric in metrics
        for f in factors
        if not f.is_context
        for c in compare_factor(f, factors, variants, metric, margin)
    ]
    if design is not None:
        from ablab.analysis.sequential import apply_design

        apply_design(out, design, margin)
    return out


def rank_factor(
    factor: Factor,
    factors: list[Factor],
    variants: list[Variant],
    comparisons: list[Comparison],
    metric: str | Outcome = DEFAULT_PRIMARY,
) -> list[Ranking]:
    """Per stratum: levels by mean ``metric`` (best first) with compact letters."""
    spec = outcome_of(metric)
    higher = spec.higher_is_better
    metric = spec.name
    out = []
    for label, members in strata(factor, factors, variants):
        if len(members) < 2:
            continue
        rows = []
        for level, v in members.items():
            values = v.values_of(metric)
            mean = sum(values) / len(values) if values else math.nan
            rows.append((factor.level_label(level), mean, len(values)))
        rows.sort(key=lambda r: (math.isnan(r[1]), -r[1] if higher else r[1]))
        names = [r[0] for r in rows]
        different = {
            frozenset({c.level_a, c.level_b})
            for c in comparisons
            if c.factor == factor.name and c.metric == metric and c.stratum == label
            and c.significant
        }
        letters = compact_letters(names, different)
        out.append(
            Ranking(
                factor.name, metric, label, names, [r[1] for r in rows],
                [letters[n] for n in names], [r[2] for r in rows],
            )
        )
    return out
