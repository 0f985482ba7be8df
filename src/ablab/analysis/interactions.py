"""Interactions between factors: does the effect of one factor depend on another?

For a study with two or more factors, each pair is tested on the primary metric with a
two-way ANOVA on the per-run values (``statsmodels`` OLS ``y ~ C(A) * C(B)`` plus the
other factors' main effects, type II sums of squares; Fisher 1925, as in statsmodels'
``anova_lm``), the pairs' interaction p-values Holm-corrected together. A found
interaction is said first, in words: which level of A is best at each level of B.

    >>> from ablab.analysis.interactions import interaction_table     # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ablab.analysis.outcomes import DEFAULT_PRIMARY, Outcome, outcome_of, scale_of
from ablab.analysis.runs import Factor, Variant
from ablab.analysis.stats import ALPHA, holm, mean_ci_in_scale
from ablab.analysis.verdicts import format_p

METHOD = (
    "Interactions: two-way ANOVA on the per-run values, OLS with the pair's interaction "
    "and every factor's main effect, type II sums of squares (statsmodels anova_lm; "
    "Fisher 1925), p-values Holm-corrected over the pairs of factors."
)


@dataclass
class Interaction:
    """The interaction of ``factor`` (whose effect is described) with ``moderator``."""

    factor: str
    moderator: str
    metric: str
    f: float
    df_num: float
    df_den: float
    p: float
    p_holm: float = math.nan
    #: per moderator level: [(factor level, mean, ci low, ci high, n)], best first
    cells: dict[str, list[tuple[str, float, float, float, int]]] = field(default_factory=dict)
    levels: list[str] = field(default_factory=list)  # the factor's levels, in plan order

    @property
    def found(self) -> bool:
        return math.isfinite(self.p_holm) and self.p_holm < ALPHA


def _safe(name: str) -> str:
    return "f_" + re.sub(r"\W", "_", name)


def per_run_frame(factors: list[Factor], variants: list[Variant], metric: str) -> pd.DataFrame:
    """One row per finished run: each factor's level label and the metric's value."""
    records = []
    for v in variants:
        levels = {f.name: f.level_label(f.level_of(v.values)) for f in factors}
        for value in v.values_of(metric):
            records.append({**levels, "y": value})
    return pd.DataFrame.from_records(records)


def _cells(frame: pd.DataFrame, factor: str, moderator: str, metric: str,
           order_a: list[str], order_b: list[str]):
    spec = outcome_of(metric)
    higher = spec.higher_is_better
    scale = scale_of(spec)
    out: dict[str, list[tuple[str, float, float, float, int]]] = {}
    for b in order_b:
        rows = []
        for a in order_a:
            y = frame.loc[(frame[factor] == a) & (frame[moderator] == b), "y"].to_numpy()
            if len(y) == 0:
                continue
            low, high = mean_ci_in_scale(y, scale)
            rows.append((a, float(y.mean()), low, high, len(y)))
        rows.sort(key=lambda r: -r[1] if higher else r[1])
        out[b] = rows
    return out


def find_interactions(
    factors: list[Factor], variants: list[Variant], metric: str | Outcome = DEFAULT_PRIMARY
) -> list[Interaction]:
    """Every pair of factors with 2+ levels each, tested for an interaction on ``metric``
    (NaN p where the design has no residual degrees of freedom or a cell is empty)."""
    from statsmodels.regression.linear_model import OLS  # = statsmodels.formula.api.ols
    from statsmodels.stats.anova import anova_lm

    metric = outcome_of(metric).name
    usable = [f for f in factors if len(f.levels) >= 2]
    if len(usable) < 2:
        return []
    frame = per_run_frame(usable, variants, metric)
    if frame.empty:
        return []
    data = frame.rename(columns={f.name: _safe(f.name) for f in usable})
    out = []
    for fa, fb in itertools.combinations(usable, 2):
        # describe the effect of the factor that is a choice, within the task's contexts
        if fa.is_context and not fb.is_context:
            fa, fb = fb, fa
        a, b = _safe(fa.name), _safe(fb.name)
        others = [_safe(f.name) for f in usable if f not in (fa, fb)]
        formula = f"y ~ C({a}) * C({b})" + "".join(f" + C({o})" for o in others)
        f_stat = df_num = df_den = p = math.nan
        full = data.groupby([a, b]).size()
        complete = len(full) == data[a].nunique() * data[b].nunique()
        if complete and len(data) > len(full) + len(others):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    model = OLS.from_formula(formula, data=data).fit()
                    table = anova_lm(model, typ=2)
                    row = table.loc[f"C({a}):C({b})"]
                    f_stat, df_num, p = float(row["F"]), float(row["df"]), float(row["PR(>F)"])
                    df_den = float(table.loc["Residual", "df"])
                except (ValueError, KeyError, ZeroDivisionError,
                        np.linalg.LinAlgError):
                    pass
        order_a = [fa.level_label(lv) for lv in fa.levels]
        order_b = [fb.level_label(lv) for lv in fb.levels]
        cells = _cells(frame, fa.name, fb.name, metric, order_a, order_b)
        out.append(Interaction(fa.name, fb.name, metric, f_stat, df_num, df_den, p,
                               cells=cells, levels=order_a))
    for item, p in zip(out, holm([i.p for i in out]), strict=True):
        item.p_holm = p
    return out


def _value(x: float, metric: str) -> str:
    return f"{x * 100:.1f} %" if outcome_of(metric).percent else f"{x:.3f}"


def _separated(i: Interaction, level: str, best: str, other: str, comparisons) -> bool | None:
    """Whether the pairwise test at ``moderator=level`` decided ``best`` over ``other``
    (None when no such comparison was made)."""
    for c in comparisons or ():
        if (c.factor == i.factor and c.metric == i.metric
                and c.stratum == f"{i.moderator}={level}"
                and {c.level_a, c.level_b} == {best, other}):
            return c.significant
    return None


def interaction_sentence(i: Interaction, comparisons=None) -> str:
    """``The effect of optimizer depends on lr (two-way ANOVA F(4, 18) = 9.1, p < 0.001
    after Holm): at lr=0.1 momentum is best (90.1 %, adam 72.0 %), ...; compare them tuned
    (see [tune]) or per lr.``"""
    p = format_p(i.p_holm)
    p = f"p {p}" if p.startswith("<") else f"p = {p}"
    parts = []
    for level, rows in i.cells.items():
        if not rows:
            continue
        best, worst = rows[0], rows[-1]
        text = f"at {i.moderator}={level} {i.factor}={best[0]} is best ({_value(best[1], i.metric)}"
        if len(rows) > 1:
            text += f"; {worst[0]} {_value(worst[1], i.metric)}"
        text += ")"
        if len(rows) > 1 and _separated(i, level, best[0], rows[1][0], comparisons) is False:
            text += (f" — not decided: the pairwise test cannot tell it from "
                     f"{i.factor}={rows[1][0]} ({_value(rows[1][1], i.metric)})")
        parts.append(text)
    best_levels = {rows[0][0] for rows in i.cells.values() if rows}
    flips = "the best level changes with it" if len(best_levels) > 1 else (
        "the same level is best throughout, by different margins"
    )
    return (
        f"The effect of {i.factor} depends on {i.moderator} ({flips}; two-way ANOVA "
        f"interaction F({i.df_num:.0f}, {i.df_den:.0f}) = {i.f:.1f}, {p}"
        f"{' after Holm' if math.isfinite(i.p_holm) and i.p_holm != i.p else ''}): "
        f"{'; '.join(parts)}. Compare {i.factor} levels tuned (see [tune]) or per "
        f"{i.moderator}, not averaged over it."
    )
