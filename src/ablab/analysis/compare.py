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

from ablab.analysis.runs import METRIC_INFO, Factor, Variant
from ablab.analysis.stats import ALPHA, TwoSample, compact_letters, compare_samples, holm

#: Metrics compared between variants (common yardsticks, never a run's own loss).
COMPARED_METRICS = ("test_accuracy", "test_cross_entropy")


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

    @property
    def higher_is_better(self) -> bool:
        return METRIC_INFO[self.metric][1]

    @property
    def testable(self) -> bool:
        return math.isfinite(self.result.p)

    @property
    def ci_excludes_zero(self) -> bool:
        r = self.result
        return math.isfinite(r.ci_low) and (r.ci_low > 0 or r.ci_high < 0)

    @property
    def significant(self) -> bool:
        """Holm-adjusted p < 0.05 AND the CI of the difference excludes 0."""
        return math.isfinite(self.p_holm) and self.p_holm < ALPHA and self.ci_excludes_zero

    @property
    def winner(self) -> str | None:
        """The better level when the difference is significant."""
        if not self.significant:
            return None
        a_higher = self.result.diff > 0
        return self.level_a if a_higher == self.higher_is_better else self.level_b

    @property
    def in_noise(self) -> bool:
        """The difference is smaller than the seed-to-seed std, or its CI includes 0."""
        r = self.result
        small = math.isfinite(r.noise_std) and abs(r.diff) < r.noise_std
        return self.testable and (small or not self.ci_excludes_zero)


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


def _paired(a: Variant, b: Variant, metric: str) -> bool:
    """Paired by seed: same seeds on both sides (at least 2) and the same data split
    (same dataset config; the split comes from ``split_seed`` or else the run's seed)."""
    sa, sb = a.by_seed(metric), b.by_seed(metric)
    same_data = a.config.get("dataset") == b.config.get("dataset")
    return same_data and set(sa) == set(sb) and len(sa) >= 2


def compare_variants(a: Variant, b: Variant, metric: str) -> TwoSample:
    """Paired t-test by seed when the pair allows it, Welch's t-test otherwise."""
    sa, sb = a.by_seed(metric), b.by_seed(metric)
    if _paired(a, b, metric):
        seeds = sorted(sa)
        return compare_samples([sa[s] for s in seeds], [sb[s] for s in seeds], paired=True)
    return compare_samples(list(sa.values()), list(sb.values()), paired=False)


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
    factor: Factor, factors: list[Factor], variants: list[Variant], metric: str
) -> list[Comparison]:
    """Every pair of levels of ``factor`` within each stratum, Holm-corrected together."""
    out = []
    for label, members in strata(factor, factors, variants):
        for (la, va), (lb, vb) in itertools.combinations(members.items(), 2):
            result = compare_variants(va, vb, metric)
            out.append(
                Comparison(
                    factor.name, metric, label, factor.level_label(la), factor.level_label(lb),
                    va.label, vb.label, result,
                )
            )
    adjusted = holm([c.result.p for c in out])
    family = sum(1 for c in out if c.testable)
    for c, p in zip(out, adjusted, strict=True):
        c.p_holm, c.family_size = p, family
    return out


def compare_all(
    factors: list[Factor], variants: list[Variant], metrics=COMPARED_METRICS
) -> list[Comparison]:
    """Comparisons of every factor on every metric (one Holm family per factor × metric).
    Factors that change the test data (another dataset) are contexts, not compared."""
    return [
        c
        for metric in metrics
        for f in factors
        if not f.changes_task
        for c in compare_factor(f, factors, variants, metric)
    ]


def rank_factor(
    factor: Factor,
    factors: list[Factor],
    variants: list[Variant],
    comparisons: list[Comparison],
    metric: str = "test_accuracy",
) -> list[Ranking]:
    """Per stratum: levels by mean ``metric`` (best first) with compact letters."""
    higher = METRIC_INFO[metric][1]
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
