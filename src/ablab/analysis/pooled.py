"""A treatment's effect across the contexts it was compared in, and trade-offs between the
primary outcome and cost.

When a factor is compared within several strata (activation within dataset=moons and
within dataset=circles), each pair of its levels also gets one pooled effect: the
random-effects meta-analytic estimate over the strata (Paule–Mandel τ², through
``statsmodels.stats.meta_analysis.combine_effects``) on the outcome's difference scale,
with its interval, the between-context variance τ² and I² (the share of the spread that
is heterogeneity rather than seed noise)::

    relu beats sigmoid across both datasets          (interval excludes 0, I² < 50 %)
    the effect depends on the dataset                (I² ≥ 50 %)

The pooled p-values of one factor × outcome are Holm-corrected together, and the interval
printed is the one at the Holm step's level, as for every other verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ablab.analysis.comparison import Comparison
from ablab.analysis.outcomes import Outcome, difference_scale_of
from ablab.analysis.stats import ALPHA, decision_levels, holm
from ablab.analysis.verdicts import MINUS, format_diff, format_level_ci, format_p

#: I² (truncated at 0, as Higgins et al. 2003 define it) at or above this: the effect
#: depends on the context (50 % is "substantial" heterogeneity there).
HETEROGENEOUS_I2 = 0.5


@dataclass
class Pooled:
    """One pair of levels of a factor, pooled over the contexts it was compared in
    (difference = level a − level b, on the outcome's own scale)."""

    factor: str
    spec: Outcome
    level_a: str
    level_b: str
    contexts: list[str]
    diffs: list[float]  # per context, in ``contexts`` order
    estimate: float  # back-transformed random-effects estimate
    z: float  # on the difference scale
    se: float
    p: float
    tau2: float
    i2: float
    q: float
    p_holm: float = math.nan
    level: float = math.nan
    low: float = math.nan  # the (1 − level) interval, back-transformed
    high: float = math.nan
    alpha: float = ALPHA
    family_size: int = 1
    comparisons: list[Comparison] = field(default_factory=list)
    result: object = None  # statsmodels' CombineResults

    @property
    def metric(self) -> str:
        return self.spec.name

    @property
    def significant(self) -> bool:
        return math.isfinite(self.low) and (self.low > 0 or self.high < 0)

    @property
    def heterogeneous(self) -> bool:
        return math.isfinite(self.i2) and self.i2 >= HETEROGENEOUS_I2

    @property
    def winner(self) -> str | None:
        if not self.significant:
            return None
        return self.level_a if (self.estimate > 0) == self.spec.higher_is_better else self.level_b


def _context_name(strata: list[str]) -> str:
    """``dataset`` when every stratum is ``dataset=...``; else ``context``."""
    names = {tuple(part.split("=", 1)[0] for part in s.split(", ")) for s in strata}
    if len(names) == 1:
        only = next(iter(names))
        if len(only) == 1:
            return only[0]
    return "context"


def pool_family(comparisons: list[Comparison], alpha: float = ALPHA) -> list[Pooled]:
    """Every pair of levels of one factor × outcome compared (testably, with a positive
    standard error) in two or more strata: pooled by random effects, Holm over the pairs."""
    from scipy import stats
    from statsmodels.stats.meta_analysis import combine_effects

    groups: dict[tuple[str, str], list[Comparison]] = {}
    for c in comparisons:
        scaled = c.result.scaled
        if c.testable and c.stratum and scaled is not None and scaled.se > 0:
            groups.setdefault((c.level_a, c.level_b), []).append(c)
    out = []
    for (la, lb), items in groups.items():
        if len(items) < 2:
            continue
        spec = items[0].spec
        eff = np.asarray([c.result.scaled.estimate for c in items], dtype=float)
        var = np.asarray([c.result.scaled.se ** 2 for c in items], dtype=float)
        res = combine_effects(eff, var, method_re="iterated", use_t=False)
        z, se = float(res.mean_effect_re), float(res.sd_eff_w_re)
        p = float(2 * stats.norm.sf(abs(z / se))) if se > 0 else math.nan
        scale = difference_scale_of(spec)
        out.append(Pooled(
            items[0].factor, spec, la, lb, [c.stratum for c in items],
            [c.result.diff for c in items], float(scale.from_z([z])[0]), z, se, p,
            float(res.tau2), max(0.0, float(res.i2)), float(res.q), alpha=alpha,
            comparisons=items,
            result=res,
        ))
    levels = decision_levels([p.p for p in out], alpha)
    size = sum(1 for p in out if math.isfinite(p.p))
    for item, p_adj, level in zip(out, holm([p.p for p in out]), levels, strict=True):
        item.p_holm, item.level, item.family_size = p_adj, level, size
        if math.isfinite(level):
            # conf_int gives (fixed, random, fixed WLS, random WLS); row 1: random effects
            low_z, high_z = item.result.conf_int(alpha=level)[1]
            low, high = difference_scale_of(item.spec).from_z([low_z, high_z])
            item.low, item.high = float(low), float(high)
    return out


def pool_all(comparisons: list[Comparison], alpha: float = ALPHA) -> list[Pooled]:
    """Pooled effects of every factor × outcome family (each its own Holm family)."""
    families: dict[tuple[str, str], list[Comparison]] = {}
    for c in comparisons:
        families.setdefault((c.factor, c.metric), []).append(c)
    return [p for family in families.values() for p in pool_family(family, alpha)]


def pooled_sentence(p: Pooled) -> str:
    """``Across dataset=moons and dataset=circles, activation=relu beats
    activation=sigmoid by 12.0 pp test accuracy (random effects, 98.3 % CI ...; τ² = ...,
    I² = 12 %): relu beats sigmoid across both datasets.``"""
    k = len(p.contexts)
    name = _context_name(p.contexts)
    where = f"Across {' and '.join(p.contexts)}" if k == 2 else (
        f"Across the {k} strata ({'; '.join(p.contexts)})"
    )
    plural = {"dataset": "datasets"}.get(name, f"{name}s" if name != "context" else "contexts")
    both = f"both {plural}" if k == 2 else f"all {k} {plural}"
    a, b = f"{p.factor}={p.level_a}", f"{p.factor}={p.level_b}"
    ci = format_level_ci(p.low, p.high, 1 - p.level, p.spec) if math.isfinite(p.level) else "CI n/a"
    holm_note = ", Holm-adjusted" if p.family_size > 1 else ""
    pv = format_p(p.p_holm)
    pv = f"p {pv}" if pv.startswith("<") else f"p = {pv}"
    tau2 = f"{p.tau2:.2g}".replace("-", MINUS)
    stats_text = (
        f"random-effects estimate over {k} {plural}, {ci}{holm_note}, {pv}; "
        f"τ² = {tau2}, I² = {p.i2 * 100:.0f} %"
    )
    if p.significant:
        win, lose = (p.level_a, p.level_b) if p.winner == p.level_a else (p.level_b, p.level_a)
        sign = 1.0 if p.estimate > 0 else -1.0  # the interval of |difference|
        low, high = sorted((sign * p.low, sign * p.high))
        ci = format_level_ci(low, high, 1 - p.level, p.spec, signed=False)
        stats_text = (
            f"random-effects estimate over {k} {plural}, {ci}{holm_note}, {pv}; "
            f"τ² = {tau2}, I² = {p.i2 * 100:.0f} %"
        )
        lower = "" if p.spec.higher_is_better else "lower "
        head = (f"{where}, {p.factor}={win} beats {p.factor}={lose} by "
                f"{format_diff(abs(p.estimate), p.spec, signed=False)} {lower}{p.spec.label} "
                f"({stats_text})")
        tail = (f"{win} beats {lose} on average, but the effect depends on the {name}"
                if p.heterogeneous else f"{win} beats {lose} across {both}")
    else:
        head = (f"{where}, {a} vs {b}: {format_diff(p.estimate, p.spec)} {p.spec.label} "
                f"({stats_text})")
        tail = (f"the effect depends on the {name}" if p.heterogeneous
                else f"no difference decided across {both}")
    return f"{head}: {tail}."


# ---------------------------------------------------------------- trade-offs


@dataclass
class TradeOff:
    """One pair of levels, in one stratum: decided one way on the primary outcome and
    another on a cost outcome (or equivalent on one, decided on the other)."""

    primary: Comparison
    cost: Comparison

    @property
    def ratio(self) -> float:
        """Cost of the cheaper level's rival over the cheaper level's (≥ 1 for "× faster")."""
        c = self.cost
        hi, lo = max(c.result.mean_a, c.result.mean_b), min(c.result.mean_a, c.result.mean_b)
        return hi / lo if lo > 0 else math.inf


_COST_WORDS = {"seconds": ("faster per run", "slower per run"),
               "steps_per_second": ("more training steps per second",
                                    "fewer training steps per second"),
               "peak_memory_mb": ("less peak memory", "more peak memory")}


def tradeoffs(comparisons: list[Comparison], primary: str) -> list[TradeOff]:
    """Pairs equivalent on ``primary`` and decided on a cost outcome, or decided on
    ``primary`` and decided the other way on cost."""
    cost = {
        (c.factor, c.stratum, c.level_a, c.level_b): c
        for c in comparisons if c.spec.family == "cost" and c.significant
    }
    out = []
    for c in comparisons:
        if c.metric != primary:
            continue
        other = cost.get((c.factor, c.stratum, c.level_a, c.level_b))
        if other is None:
            continue
        if c.outcome == "equivalent" or (c.significant and c.winner != other.winner):
            out.append(TradeOff(c, other))
    return out


def tradeoff_sentence(t: TradeOff) -> str:
    """``precision=bf16 is equivalent in test accuracy within ±0.5 pp and 1.6× faster per
    run than precision=fp32 (...)``."""
    p, c = t.primary, t.cost
    where = f"On {p.stratum}, " if p.stratum else ""
    better, worse = _COST_WORDS.get(c.metric, (f"better in {c.spec.label}",
                                               f"worse in {c.spec.label}"))
    cheap = c.winner
    dear = c.level_b if cheap == c.level_a else c.level_a
    ratio = f"{t.ratio:.1f}×" if math.isfinite(t.ratio) else "infinitely"
    means = {c.level_a: c.result.mean_a, c.level_b: c.result.mean_b}
    unit = f" {c.spec.unit}" if c.spec.unit else ""
    cost_text = (f"{c.spec.label} {means[cheap]:.3g}{unit} vs {means[dear]:.3g}{unit}, "
                 f"Holm p = {c.p_holm:.2g}")
    if p.outcome == "equivalent":
        margin = format_diff(p.margin, p.spec, signed=False)
        if not math.isfinite(p.margin):
            margin_text = "(identical in every seed)"
        else:
            margin_text = f"within ±{margin}"
        return (f"{where}{p.factor}={cheap} is equivalent in {p.spec.label} {margin_text} "
                f"and {ratio} {better} than {p.factor}={dear} ({cost_text}).")
    by = format_diff(abs(p.result.diff), p.spec, signed=False)
    return (f"{where}{p.factor}={p.winner} beats {p.factor}={cheap} by {by} {p.spec.label} "
            f"but is {ratio} {worse} ({cost_text}).")
