"""Pairwise comparisons inside each factor, the other factors held equal, and rankings
with groups of variants that cannot be told apart.

For factor ``activation`` in a study that also varies ``dataset``, relu is compared with
sigmoid within dataset=moons and, separately, within dataset=circles. All comparisons of
one factor (and one metric) form a family whose p-values are Holm-corrected together.
"""

from __future__ import annotations

import itertools
import math

from ablab.analysis.comparison import Comparison, Ranking, add_power, decide_family, measure
from ablab.analysis.outcomes import (
    DEFAULT_PRIMARY,
    DEFAULT_SECONDARY,
    Outcome,
    difference_scale_of,
    outcome_of,
)
from ablab.analysis.runs import Factor, Variant
from ablab.analysis.sequential import Design, apply_design
from ablab.analysis.stats import ALPHA, TwoSample, compact_letters, compare_samples

#: names other modules and tests take from here (the comparison record and its decision)
__all__ = [
    "COMPARED_METRICS", "DEFAULT_MARGIN", "Comparison", "Ranking", "add_power",
    "compare_all", "compare_factor", "compare_samples", "compare_variants",
    "decide_family", "paired_values", "rank_factor", "strata",
]

#: The default equivalence margin: ±1 percentage point of accuracy.
DEFAULT_MARGIN = 0.01

#: Metrics compared between variants when a study declares none (common yardsticks, never
#: a run's own loss).
COMPARED_METRICS = (DEFAULT_PRIMARY, *DEFAULT_SECONDARY)


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
            lacking = [
                factor.level_label(lv) for lv, v, x in ((la, va, xa), (lb, vb, xb))
                if v.done and not x
            ]
            out.append(
                Comparison(
                    factor.name, spec.name, label, factor.level_label(la),
                    factor.level_label(lb), va.label, vb.label, seeds=seeds, values_a=xa,
                    values_b=xb, **measure(xa, xb, paired, spec),
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
    design: Design | None = None,
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
        out = apply_design(out, design, margin)
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
