"""The figure of a study's ``[tune]`` table: the tuning metric against each tuned
parameter (DeepOBS-style sensitivity)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ablab.analysis.runs import METRIC_INFO
from ablab.report.figures.style import (
    PALETTE,
    legend_below,
    new_figure,
    styled,
    variant_colors,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablab.analysis import StudyAnalysis


TUNING_MARKERS = {"done": ("o", True), "pruned": ("o", False), "diverged": ("x", True),
                  "failed": ("x", True)}

@styled
def fig_tuning_sensitivity(a: StudyAnalysis) -> Figure | None:
    """DeepOBS-style sensitivity: the tuning metric (validation data) against each tuned
    parameter, every trial a dot, one colour per variant (the report's colours), a star
    at each variant's best; log x for loguniform parameters, categories for choice.
    Pruned trials are open circles, diverged / failed ones crosses (where they have a
    value). None for a study without [tune]."""
    t = a.tuning
    if not t or not t.get("params"):
        return None
    paths = list(t["params"])
    colors = variant_colors(a)
    metric = t["metric"]
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    fig = new_figure(figsize=(6.5 * len(paths), 5.2))
    axes = np.atleast_1d(fig.subplots(1, len(paths)))
    for ax, path in zip(axes, paths, strict=True):
        dist = t["distributions"][path]
        choices = [str(c) for c in dist["args"]] if dist["kind"] == "choice" else None

        def x_of(value, choices=choices):
            return choices.index(str(value)) if choices is not None else value

        for i, v in enumerate(t["variants"]):
            color = colors.get(v["label"], PALETTE[i % len(PALETTE)])
            for outcome, (marker, filled) in TUNING_MARKERS.items():
                rows = [r for r in v["trial_rows"] if path in r["params"]
                        and r["outcome"] == outcome and r["value"] is not None]
                if not rows:
                    continue
                xs = [x_of(r["params"][path]) for r in rows]
                ys = [r["value"] * scale for r in rows]
                label = v["label"] if outcome == "done" else f"{v['label']} ({outcome})"
                ax.scatter(xs, ys, marker=marker, s=40, alpha=0.8, label=label,
                           color=color if filled or marker == "x" else "none",
                           edgecolors=color if marker == "o" else None)
            if path in v["best_params"] and v["best_value"] is not None:
                ax.scatter([x_of(v["best_params"][path])], [v["best_value"] * scale],
                           marker="*", s=260, color=color, edgecolors="black", zorder=5)
        if dist["kind"] == "loguniform":
            ax.set_xscale("log")
        if choices is not None:
            ax.set_xticks(range(len(choices)), choices)
        elif dist["kind"] != "int":
            ax.set_xlim(dist["args"][0], dist["args"][1])
        ax.set_xlabel(f"{path} ({t['params'][path]})")
        name = METRIC_INFO[metric][0] if metric in METRIC_INFO else metric
        ax.set_ylabel(f"{name}{' (%)' if scale == 100 else ''}")
        ax.set_title(f"{metric} vs {path}")
    legend_below(fig, axes)
    return fig
