"""Figures of the results: final metrics per variant with their intervals, and the
interactions between two factors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ablab.analysis.runs import METRIC_INFO
from ablab.report.figures.style import (
    PALETTE,
    new_figure,
    short_label,
    styled,
    variant_colors,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablab.analysis import StudyAnalysis


def _outcome(a: StudyAnalysis, metric: str):
    from ablab.analysis.outcomes import outcome_of

    return a.outcomes.get(metric) if a.outcomes is not None else outcome_of(metric)


def _final_metrics_shown(a: StudyAnalysis) -> list[str]:
    """The final metrics the dot plot shows: test accuracy and cross-entropy (a study
    judged on them), else the primary outcome and the next performance outcome with
    values (R² and RMSE for a regression study); [] when none has values."""
    def has(metric: str) -> bool:
        return any(v.values_of(metric) for v in a.variants)

    primary = a.primary
    if primary == "test_accuracy":
        return ["test_accuracy", "test_cross_entropy"] if has("test_accuracy") else []
    if not has(primary):
        return []
    others = [o.name for o in (a.outcomes.others if a.outcomes else ())
              if o.family == "performance" and has(o.name)]
    return [primary, *others[:1]]


@styled
def fig_final_metrics(a: StudyAnalysis) -> Figure | None:
    """Dot plot of the final metrics: mean with 95 % CI per variant, each seed a dot."""
    from ablab.analysis.stats import describe, metric_scale

    colors = variant_colors(a)
    metrics = _final_metrics_shown(a)
    if not metrics:
        return None
    n = len(a.variants)
    fig = new_figure(figsize=(13, 1.8 + 0.55 * n))
    axes = fig.subplots(1, len(metrics), sharey=True)
    ys = np.arange(n)[::-1]
    axes = np.atleast_1d(axes)
    for ax, metric in zip(axes, metrics, strict=True):
        outcome = _outcome(a, metric)
        scale = 100.0 if outcome.unit == "fraction" else 1.0
        for y, v in zip(ys, a.variants, strict=True):
            raw = v.values_of(metric)
            values = np.asarray(raw) * scale
            if len(values):
                ax.scatter(values, np.full(len(values), y) + 0.18, s=22, facecolors="none",
                           edgecolors=colors[v.label], lw=1.2, zorder=3)
                d = describe(raw, scale=metric_scale(outcome))  # as summary.csv has it
                mean = d["mean"] * scale
                low = d["ci_low"] * scale
                high = d["ci_high"] * scale
                if np.isfinite(low):
                    # the interval is made on the metric's scale (logit / log), so the
                    # arithmetic mean may sit just outside it: never a negative bar
                    ax.errorbar(mean, y, xerr=[[max(mean - low, 0)], [max(high - mean, 0)]],
                                fmt="o",
                                color=colors[v.label], ms=8, capsize=5, lw=2, zorder=4)
                else:
                    ax.plot(mean, y, "o", color=colors[v.label], ms=8, zorder=4)
            else:
                ax.text(0.02, y, "no finished runs", transform=ax.get_yaxis_transform(),
                        va="center", color="#888")
        name = outcome.label
        better = "higher is better" if outcome.higher_is_better else "lower is better"
        ax.set_xlabel(f"{name}{' (%)' if scale == 100 else ''} — {better}")
        ax.set_title(name)
    axes[0].set_yticks(ys, [short_label(a, v) for v in a.variants])
    axes[0].set_ylim(-0.7, n - 0.3)
    fig.suptitle("Final metrics: mean and 95 % CI (t, on the metric's scale); "
                 "circles = single seeds")
    fig.tight_layout()
    return fig


@styled
def fig_interactions(a: StudyAnalysis) -> Figure | None:
    """Interaction plots: the primary metric against one factor's levels, one line per
    level of the other factor, mean with its 95 % CI (on the metric's scale); one panel
    per pair of factors, found interactions first. None for a study with < 2 factors."""
    items = sorted(a.interactions, key=lambda i: (not i.found, i.p_holm))[:4]
    items = [i for i in items if any(i.cells.values())]
    if not items:
        return None
    fig = new_figure(figsize=(6.5 * len(items), 5.2))
    axes = np.atleast_1d(fig.subplots(1, len(items)))
    for ax, item in zip(axes, items, strict=True):
        seen = {r[0] for rows in item.cells.values() for r in rows}
        levels = [lv for lv in item.levels if lv in seen]
        xs = np.arange(len(levels))
        scale = 100.0 if item.metric.endswith("accuracy") else 1.0
        for k, (moderator_level, rows) in enumerate(item.cells.items()):
            by_level = {r[0]: r for r in rows}
            mean = np.array([by_level[lv][1] if lv in by_level else np.nan for lv in levels])
            low = np.array([by_level[lv][2] if lv in by_level else np.nan for lv in levels])
            high = np.array([by_level[lv][3] if lv in by_level else np.nan for lv in levels])
            shift = (k - (len(item.cells) - 1) / 2) * 0.06
            err = np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)])
            err = np.where(np.isfinite(err), err, 0.0) * scale
            ax.errorbar(xs + shift, mean * scale, yerr=err, fmt="o-", capsize=4, lw=2,
                        color=PALETTE[k % len(PALETTE)],
                        label=f"{item.moderator}={moderator_level}")
        ax.set_xticks(xs, levels)
        ax.set_xlabel(item.factor)
        name = a.outcomes.get(item.metric).label if a.outcomes else METRIC_INFO[item.metric][0]
        ax.set_ylabel(f"{name}{' (%)' if scale == 100 else ''}")
        verdict = "interaction" if item.found else "no interaction found"
        p = f"p = {item.p_holm:.2g}" if np.isfinite(item.p_holm) else "p n/a"
        ax.set_title(f"{item.factor} × {item.moderator}: {verdict} ({p})")
        ax.legend(fontsize=10)
    fig.tight_layout()
    return fig
