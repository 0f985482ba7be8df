"""The report's figures, one function each: ``fig_*(analysis) -> matplotlib Figure`` (or
None when the study has nothing to draw), so a notebook can call them directly::

    >>> from ablab.analysis import analyze                           # doctest: +SKIP
    >>> fig = fig_learning_curves(analyze(store)); fig                # doctest: +SKIP

Figures are built without pyplot (``matplotlib.figure.Figure``: no global state, no GUI
backend) with large fonts for print. Each variant keeps one colour in every figure
(:func:`variant_colors`). :func:`save_figure` writes PNG (+ SVG).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ablab.analysis.curves import (
    MAX_CURVE_POINTS,
    activation_hist,
    batch_curve,
    boundary_of,
    display_grid,
    has_history,
    history_curve,
    probe_matrix,
)
from ablab.analysis.runs import METRIC_INFO

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablab.analysis import StudyAnalysis, Variant

# matplotlib is imported where a figure is built or rendered, not with this module: a
# report whose figures are all reused (see ablab.report.writer) never imports it.

STYLE = {
    "font.size": 13,
    "axes.titlesize": 14,
    "axes.labelsize": 13,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "figure.titlesize": 16,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "ablab",  # stable SVG ids
    "svg.fonttype": "none",
}
PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22",
]


def styled(fn: Callable) -> Callable:
    """Build the figure inside the report's style (rcParams are read at creation)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def variant_colors(a: StudyAnalysis) -> dict[str, str]:
    """The fixed variant → colour mapping (plan order; cycles past 10 variants)."""
    if len(a.variants) <= len(PALETTE):
        return {v.label: PALETTE[i] for i, v in enumerate(a.variants)}
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return {v.label: matplotlib.colors.to_hex(cmap(i % 20)) for i, v in enumerate(a.variants)}


def short_label(a: StudyAnalysis, v: Variant) -> str:
    """``activation=relu, dataset=moons``: each factor's first column only."""
    if not a.factors:
        return v.label or a.name
    return ", ".join(f.describe(v.values) for f in a.factors)


def _new_figure(**kwargs) -> Figure:
    """A ``matplotlib.figure.Figure`` (no pyplot, no global state)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _integer_locator():
    """Ticks at integers only (epochs)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _legend_below(fig: Figure, axes, ncol: int | None = None) -> None:
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        ncol = ncol or min(3, len(labels))
        fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False)
        rows = math.ceil(len(labels) / ncol)
        fig.subplots_adjust(bottom=min(0.5, (0.75 + 0.32 * rows) / fig.get_figheight()))


def _regression(a: StudyAnalysis) -> bool:
    """The study's runs predict a number (no accuracy in their histories)."""
    return (any(has_history(v, "val_rmse") for v in a.variants)
            and not any(has_history(v, "train_accuracy") for v in a.variants))


def _validated_on_test(a: StudyAnalysis) -> bool:
    return any((v.config.get("dataset") or {}).get("validate_on") == "test" for v in a.variants)


@styled
def fig_learning_curves(a: StudyAnalysis) -> Figure | None:
    """Train / validation loss and accuracy per epoch: median over seeds with the
    interquartile band (a summary per variant, not one line per run, so the figure costs
    the same at 5 seeds and at 500)."""
    colors = variant_colors(a)
    val = "validation (= TEST set)" if _validated_on_test(a) else "validation"
    panels = [
        ("train_loss", "train loss (own loss)", "loss"),
        ("val_loss", f"{val} loss (own loss)", "loss"),
        ("train_accuracy", "train accuracy", "accuracy"),
        ("val_accuracy", f"{val} accuracy", "accuracy"),
    ]
    if _regression(a):  # no accuracy: the validation RMSE and R², in the target's units
        panels[2:] = [("val_rmse", f"{val} RMSE", "RMSE"), ("val_r2", f"{val} R²", "R²")]
    if not any(has_history(v, "train_loss") for v in a.variants):
        return None
    fig = _new_figure(figsize=(13, 9.5))
    axes = fig.subplots(2, 2, sharex=True)
    for ax, (key, title, ylabel) in zip(axes.ravel(), panels, strict=True):
        for v in a.variants:
            if not has_history(v, key):
                continue
            c = history_curve(v, key)
            scale = 100.0 if key.endswith("accuracy") else 1.0
            ax.plot(c["epochs"], c["median"] * scale, color=colors[v.label], lw=2,
                    label=short_label(a, v))
            ax.fill_between(c["epochs"], c["low"] * scale, c["high"] * scale,
                            color=colors[v.label], alpha=0.18, lw=0)
        ax.set_title(title)
        ax.set_ylabel("accuracy (%)" if ylabel == "accuracy" else ylabel)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_integer_locator())
    fig.suptitle("Learning curves (median over seeds, band = 25–75 % of seeds)")
    _margins(fig, left=1.0, right=0.25, top=0.95, bottom=0.9, wgap=1.0, hgap=0.55)
    _legend_below(fig, axes)
    return fig


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
    fig = _new_figure(figsize=(13, 1.8 + 0.55 * n))
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
def fig_batch_losses(a: StudyAnalysis) -> Figure | None:
    """Training loss of every batch (mean over seeds; long runs drawn as the means of
    consecutive blocks of batches, at most ``MAX_CURVE_POINTS`` points)."""
    colors = variant_colors(a)
    curves = [(v, batch_curve(v)) for v in a.variants]
    curves = [(v, c) for v, c in curves if len(c["mean"])]
    if not curves:
        return None
    fig = _new_figure(figsize=(13, 6))
    ax = fig.subplots()
    positive = True
    for v, c in curves:
        ax.plot(c["steps"], c["mean"], color=colors[v.label], lw=1.5, label=short_label(a, v))
        positive &= bool(np.nanmin(c["mean"]) > 0)
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("training batch (step)")
    ax.xaxis.set_major_locator(_integer_locator())
    ax.set_ylabel("training loss (own loss)" + (", log scale" if positive else ""))
    ax.set_title("Per-batch training loss (mean over seeds)")
    _margins(fig, left=1.0, right=0.25, top=0.55, bottom=0.9)
    _legend_below(fig, [ax])
    return fig


@styled
def fig_learning_rate(a: StudyAnalysis) -> Figure | None:
    """The learning rate of each epoch."""
    colors = variant_colors(a)
    items = [(v, history_curve(v, "lr")) for v in a.variants if has_history(v, "lr")]
    if not items:
        return None
    fig = _new_figure(figsize=(13, 5))
    ax = fig.subplots()
    for k, (v, c) in enumerate(items):
        ax.plot(c["epochs"], c["mean"], color=colors[v.label], lw=2.5,
                ls=["-", "--", ":", "-."][k % 4], label=short_label(a, v))
    values = np.concatenate([c["mean"] for _, c in items])
    values = values[np.isfinite(values) & (values > 0)]
    title = "Learning rate per epoch"
    if len(values) and values.max() / values.min() > 20:
        ax.set_yscale("log")
    elif len(values) and values.max() == values.min():
        ax.set_ylim(0, values.max() * 1.5)
        title += f" (constant: {values.max():g} in every variant)"
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(_integer_locator())
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    _margins(fig, left=1.0, right=0.25, top=0.55, bottom=0.9)
    _legend_below(fig, [ax])
    return fig


def _margins(fig: Figure, left: float, right: float, top: float, bottom: float,
             wgap: float = 0.0, hgap: float = 0.0) -> None:
    """Place a figure's subplots with fixed margins and gaps in inches (what
    ``tight_layout`` would find for the report's figures, without measuring every tick
    label: most of the time of drawing them); the legend below sets its own bottom."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    gs = fig.axes[0].get_subplotspec().get_gridspec()
    rows, cols = gs.get_geometry()
    panel_w = max(0.5, (width - left - right - wgap * (cols - 1)) / cols)
    panel_h = max(0.5, (height - top - bottom - hgap * (rows - 1)) / rows)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height, wspace=wgap / panel_w, hspace=hgap / panel_h)


def _panels(fig: Figure, rows: int, cols: int, left: float, right: float, top: float,
            bottom: float, wgap: float, hgap: float) -> np.ndarray:
    """A rows × cols grid of axes with fixed margins and gaps in inches, and ``right``
    inches kept free for a colorbar (see :func:`_colorbar`): the panel figures' layout,
    computed instead of solved (matplotlib's constrained layout measures every tick
    label of every panel, most of the time of drawing a many-panel figure)."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    panel_w = max(0.5, (width - left - right - wgap * (cols - 1)) / cols)
    panel_h = max(0.5, (height - top - bottom - hgap * (rows - 1)) / rows)
    return fig.subplots(rows, cols, squeeze=False, gridspec_kw={
        "left": left / width, "right": 1 - right / width,
        "top": 1 - top / height, "bottom": bottom / height,
        "wspace": wgap / panel_w, "hspace": hgap / panel_h,
    })


def _colorbar(fig: Figure, image, top: float, bottom: float, label: str,
              shrink: float = 1.0) -> None:
    """A colorbar in the right margin :func:`_panels` left (0.22 in wide, 0.3 in from
    the panels), spanning ``shrink`` of the panels' height (margins in inches)."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    span = (height - top - bottom) / height
    low = bottom / height + span * (1 - shrink) / 2
    right_of_panels = 1 - fig.subplotpars.right
    cax = fig.add_axes((1 - right_of_panels + 0.3 / width, low, 0.22 / width, span * shrink))
    fig.colorbar(image, cax=cax, label=label)


def _power_norm(gamma: float):
    """Colour scale for shares in [0, 1] that spreads the small ones."""
    from matplotlib.colors import PowerNorm

    return PowerNorm(gamma, vmin=0, vmax=1)


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


def _unit_heatmap(a: StudyAnalysis, key: str, title: str, cbar: str) -> Figure | None:
    colors = variant_colors(a)
    mats = [(v, probe_matrix(v, "dead_units", key)) for v in a.variants]
    mats = [(v, m) for v, m in mats if m is not None]
    shown = [(v, m) for v, m in mats if m["defined"]]
    undefined = [short_label(a, v) for v, m in mats if not m["defined"]]
    if not shown:
        return None
    rows, cols = _grid(len(shown), max_cols=2)
    height = 1.4 + 0.9 * max(len(m["layers"]) for _, m in shown)
    fig = _new_figure(figsize=(6.5 * cols + 1.5, height * rows + 1.2))
    top = 0.8 + (0.35 if undefined else 0.0)
    axes = _panels(fig, rows, cols, left=1.2, right=1.5, top=top, bottom=0.7, wgap=1.3,
                   hgap=1.1).ravel()
    image = None
    for ax, (v, m) in zip(axes, shown, strict=False):
        epochs = m["epochs"]
        image = ax.imshow(
            m["values"] * 100, aspect="auto", cmap="magma", vmin=0, vmax=100,
            interpolation="nearest",
            extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(m["layers"]) - 0.5, -0.5),
        )
        ax.set_yticks(range(len(m["layers"])),
                      [f"{n}\n({k})" for n, k in zip(m["layers"], m["kinds"], strict=False)])
        ax.xaxis.set_major_locator(_integer_locator())
        ax.set_title(short_label(a, v), color=colors[v.label], fontsize=13)
        ax.set_xlabel("epoch")
        ax.grid(False)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    _colorbar(fig, image, top, 0.7, cbar, shrink=0.9)
    note = f"\nnot defined for bounded activations: {'; '.join(undefined)}" if undefined else ""
    fig.suptitle(title + note)
    return fig


@styled
def fig_dead_units(a: StudyAnalysis) -> Figure | None:
    """Dead units per layer and epoch: units off for every input of the probe batch."""
    return _unit_heatmap(
        a, "dead_unit_fraction",
        "Dead units (off for every probe input), layer × epoch, mean over seeds",
        "dead units (% of the layer's units)",
    )


@styled
def fig_zero_activations(a: StudyAnalysis) -> Figure | None:
    """Zero-activation fraction (sparsity): the share of all outputs that are off — what
    some reports call "dead ReLU %", which is not the same as dead units."""
    return _unit_heatmap(
        a, "zero_activation_fraction",
        "Zero-activation fraction (share of outputs that are off — sparsity, NOT dead units)",
        "outputs off (% of all values)",
    )


@styled
def fig_activation_histograms(a: StudyAnalysis) -> Figure | None:
    """Activation distributions per layer over training: rows = variants, columns =
    layers; colour = share of values in each bin at each epoch (sqrt scale)."""
    colors = variant_colors(a)
    hists = []
    for v in a.variants:
        per_layer = []
        layer = 0
        while (h := activation_hist(v, layer)) is not None:
            per_layer.append(h)
            layer += 1
        if per_layer:
            hists.append((v, per_layer))
    if not hists:
        return None
    cols = max(len(p) for _, p in hists)
    rows = len(hists)
    fig = _new_figure(figsize=(5.2 * cols + 1.5, 2.9 * rows + 1.2))
    axes = _panels(fig, rows, cols, left=1.0, right=1.4, top=1.05, bottom=0.75, wgap=0.6,
                   hgap=0.95)
    image = None
    for r, (v, per_layer) in enumerate(hists):
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(per_layer):
                ax.set_visible(False)
                continue
            h = per_layer[c]
            e = h["epochs"]
            image = ax.imshow(
                h["density"], aspect="auto", origin="lower", cmap="viridis",
                norm=_power_norm(0.5), interpolation="nearest",
                extent=(e[0] - 0.5, e[-1] + 0.5, h["edges"][0], h["edges"][-1]),
            )
            ax.grid(False)
            ax.xaxis.set_major_locator(_integer_locator())
            ax.set_title(f"{short_label(a, v)}\n{h['layer']} ({h['kind']})",
                         color=colors[v.label], fontsize=12)
            if c == 0:
                ax.set_ylabel("activation value")
            if r == rows - 1:
                ax.set_xlabel("epoch")
    fig.suptitle("Activation distributions per layer over training (probe batch, all seeds)")
    _colorbar(fig, image, 1.05, 0.75, "share of values in bin (sqrt scale)", shrink=0.6)
    return fig


@styled
def fig_gradient_norms(a: StudyAnalysis) -> Figure | None:
    """Mean gradient norm of each layer's weight per epoch (log scale), one panel per
    layer, one line per variant."""
    colors = variant_colors(a)
    mats = [(v, probe_matrix(v, "gradients", "grad_norm")) for v in a.variants]
    mats = [(v, m) for v, m in mats if m is not None and m["defined"]]
    if not mats:
        return None
    layers = max((m["layers"] for _, m in mats), key=len)
    rows, cols = _grid(len(layers))
    fig = _new_figure(figsize=(5.2 * cols, 4.2 * rows + 1.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, (ax, name) in enumerate(zip(axes, layers, strict=False)):
        for v, m in mats:
            if name not in m["layers"]:
                continue
            values = m["values"][m["layers"].index(name)]
            ok = np.isfinite(values) & (values > 0)
            ax.plot(np.asarray(m["epochs"])[ok], values[ok], color=colors[v.label], lw=2,
                    label=short_label(a, v))
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(_integer_locator())
        ax.set_title(f"layer {name}")
        ax.set_xlabel("epoch")
        if i % cols == 0:
            ax.set_ylabel("mean gradient norm (log)")
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    fig.suptitle("Gradient norm per layer (mean over batches and seeds)")
    _margins(fig, left=1.1, right=0.25, top=0.95, bottom=0.9, wgap=0.6, hgap=1.0)
    _legend_below(fig, axes)
    return fig


def _dataset_factor(a: StudyAnalysis):
    return next((f for f in a.factors if any(p.startswith("dataset.") for p in f.paths)), None)


@styled
def fig_decision_boundaries(a: StudyAnalysis) -> Figure | None:
    """Decision boundaries (first seed) on a variant × dataset grid, with the test points;
    colour = P(class 1), black line = 0.5."""
    items = [(v, boundary_of(v)) for v in a.variants]
    items = [(v, b) for v, b in items if b is not None]
    if not items:
        return None
    data_factor = _dataset_factor(a)
    others = [f for f in a.factors if f is not data_factor]

    def row_key(v: Variant) -> str:
        return ", ".join(f.describe(v.values) for f in others) or "all"

    def col_key(v: Variant) -> str:
        return data_factor.describe(v.values) if data_factor else "data"

    rows = list(dict.fromkeys(row_key(v) for v, _ in items))
    cols = list(dict.fromkeys(col_key(v) for v, _ in items))
    colors = variant_colors(a)
    fig = _new_figure(figsize=(4.4 * len(cols) + 1.6, 4.2 * len(rows) + 0.8))
    axes = _panels(fig, len(rows), len(cols), left=0.25, right=1.7, top=1.0, bottom=0.2,
                   wgap=0.3, hgap=0.75)
    for ax in axes.ravel():
        ax.set_visible(False)
    image = None
    for v, b in items:
        ax = axes[rows.index(row_key(v)), cols.index(col_key(v))]
        ax.set_visible(True)
        xs, ys, prob, classes = display_grid(b)  # at most MAX_GRID_CELLS a side
        extent = (*b["x_range"], *b["y_range"])
        multi = classes is not None
        if multi:
            image = ax.imshow(classes, origin="lower", extent=extent, cmap="tab10",
                              aspect="auto", alpha=0.5, vmin=0, vmax=9)
        else:
            image = ax.imshow(prob, origin="lower", extent=extent, cmap="RdBu_r", vmin=0,
                              vmax=1, aspect="auto", alpha=0.75)
            if prob.min() < 0.5 < prob.max():
                ax.contour(xs, ys, prob, levels=[0.5], colors="k", linewidths=1.5)
        pts = b["test_points"]
        ax.scatter(pts["x"], pts["y"], c=pts["label"], cmap="RdBu_r" if not multi else "tab10",
                   s=9, edgecolors="k", linewidths=0.3, vmin=0,
                   vmax=1 if not multi else 9)
        acc = b.get("test_accuracy")
        acc_text = f", test acc. {acc * 100:.1f} %" if acc is not None else ""
        ax.set_title(f"{row_key(v)}\n{col_key(v)} (seed {b['seed']}{acc_text})",
                     fontsize=12, color=colors[v.label])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.suptitle("Decision boundaries with the test points (first seed of each variant)")
    if image is not None and not any(b.get("num_classes", 2) > 2 for _, b in items):
        _colorbar(fig, image, 1.0, 0.2, "P(class 1)", shrink=0.6)
    return fig


#: Confusion matrices and per-class figures are drawn for at most this many classes.
MAX_CLASSES = 30


def _confusion_of(v: Variant) -> tuple[np.ndarray, list[str]] | None:
    """The variant's test confusion matrix summed over its done runs (rows: true classes;
    predictions that are no class left out) and the class names the dataset gave (else
    the class numbers); None without one."""
    total, names = None, None
    for row in v.done:
        final = row.get("final") or {}
        confusion = final.get("confusion")
        if not confusion:
            continue
        m = np.asarray(confusion, dtype=float)
        m = m[:, : m.shape[0]]
        if total is None:
            total = m
        elif total.shape == m.shape:
            total = total + m
        names = names or final.get("class_names")
    if total is None or total.shape[0] > MAX_CLASSES:
        return None
    k = total.shape[0]
    names = [str(n) for n in names] if names and len(names) == k else [str(i) for i in range(k)]
    return total, names


def _recall(confusion: np.ndarray) -> np.ndarray:
    actual = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(actual > 0, np.diag(confusion) / actual, np.nan)


@styled
def fig_confusion_matrices(a: StudyAnalysis) -> Figure | None:
    """Each variant's test confusion matrix, summed over its seeds, as shares of each
    true class; the classes named as the dataset names them."""
    items = [(v, c) for v in a.variants if (c := _confusion_of(v)) is not None]
    if not items:
        return None
    rows, cols = _grid(len(items))
    k = max(len(names) for _, (_, names) in items)
    side = max(2.6, min(6.0, 0.4 * k + 1.2))  # inches per panel
    left, right, top, bottom, wgap, hgap = 1.4, 1.8, 0.9, 0.9, 1.5, 1.2
    fig = _new_figure(figsize=(left + right + cols * side + (cols - 1) * wgap,
                               top + bottom + rows * side + (rows - 1) * hgap))
    axes = _panels(fig, rows, cols, left=left, right=right, top=top, bottom=bottom,
                   wgap=wgap, hgap=hgap)
    image = None
    for ax, (v, (m, names)) in zip(axes.ravel(), items, strict=False):
        with np.errstate(invalid="ignore", divide="ignore"):
            share = m / m.sum(axis=1, keepdims=True)
        image = ax.imshow(np.nan_to_num(share), cmap="Blues", vmin=0, vmax=1)
        ticks = np.arange(len(names))
        ax.set_xticks(ticks, names, rotation=45 if len(names) > 4 else 0, ha="right"
                      if len(names) > 4 else "center")
        ax.set_yticks(ticks, names)
        ax.grid(False)
        if len(names) <= 12:
            for i in range(len(names)):
                for j in range(len(names)):
                    if m[i, j]:
                        ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=9,
                                color="white" if share[i, j] > 0.5 else "#333")
        ax.set_title(short_label(a, v), fontsize=11)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    for ax in axes.ravel()[len(items):]:
        ax.set_visible(False)
    fig.suptitle("Test confusion matrices (counts summed over seeds)")
    if image is not None:  # in the right margin, 0.35 in from the panels
        width, height = fig.get_figwidth(), fig.get_figheight()
        cax = fig.add_axes((1 - (right - 0.35) / width, bottom / height, 0.22 / width,
                            (height - top - bottom) / height))
        fig.colorbar(image, cax=cax, label="share of the true class")
    return fig


@styled
def fig_per_class(a: StudyAnalysis) -> Figure | None:
    """Test recall of each class per variant (from the confusion matrices summed over
    seeds): which classes a choice helps or hurts."""
    items = [(v, c) for v in a.variants if (c := _confusion_of(v)) is not None]
    if not items:
        return None
    names = max((n for _, (_, n) in items), key=len)
    k = len(names)
    colors = variant_colors(a)
    fig = _new_figure(figsize=(max(8.0, 0.5 * k * max(1, len(items) / 2) + 3), 5.2))
    ax = fig.subplots()
    width = 0.8 / len(items)
    for i, (v, (m, _)) in enumerate(items):
        recall = _recall(m) * 100
        xs = np.arange(len(recall)) + (i - (len(items) - 1) / 2) * width
        ax.bar(xs, recall, width=width, color=colors[v.label], label=short_label(a, v))
    ax.set_xticks(np.arange(k), names, rotation=45 if k > 6 else 0,
                  ha="right" if k > 6 else "center")
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Per-class test recall (summed over seeds)")
    fig.tight_layout()
    _legend_below(fig, ax)
    return fig


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem
    topic: str
    title: str
    caption: str
    make: Callable[[StudyAnalysis], Figure | None]


FIGURES = [
    FigureSpec("final_metrics", "Results", "Final metrics",
               "Mean and 95 % CI of test accuracy and test softmax cross-entropy per variant; "
               "open circles are single seeds. Only finished (done) runs.", fig_final_metrics),
    FigureSpec("confusion_matrices", "Results", "Confusion matrices",
               "Each variant's test confusion matrix, counts summed over its finished seeds; "
               "rows are true classes, named as the dataset names them.",
               fig_confusion_matrices),
    FigureSpec("per_class", "Results", "Per-class recall",
               "Share of each class's test examples predicted right, per variant (summed "
               "over seeds).", fig_per_class),
    FigureSpec("learning_curves", "Training", "Learning curves",
               "Median over seeds with the band holding the middle half of the seeds "
               "(25–75 %). Loss panels show each run's own loss.",
               fig_learning_curves),
    FigureSpec("batch_losses", "Training", "Per-batch training loss",
               "Training loss of every batch, mean over seeds (runs of more than "
               f"{MAX_CURVE_POINTS} batches: the mean of each block of consecutive batches).",
               fig_batch_losses),
    FigureSpec("learning_rate", "Training", "Learning rate",
               "Learning rate in effect at each epoch.", fig_learning_rate),
    FigureSpec("dead_units", "Diagnostics", "Dead units",
               "Share of a layer's units that are off for every input of the probe batch.",
               fig_dead_units),
    FigureSpec("zero_activations", "Diagnostics", "Zero-activation fraction (sparsity)",
               "Share of all activation values that are off; not the same as dead units.",
               fig_zero_activations),
    FigureSpec("activation_histograms", "Diagnostics", "Activation distributions",
               "Histogram of each activation layer's outputs at every epoch (fixed range).",
               fig_activation_histograms),
    FigureSpec("gradient_norms", "Diagnostics", "Gradient norms per layer",
               "Mean L2 norm of each layer's weight gradient per epoch, log scale.",
               fig_gradient_norms),
    FigureSpec("decision_boundaries", "Diagnostics", "Decision boundaries",
               "Model probabilities on the input plane with the test points (first seed).",
               fig_decision_boundaries),
]


@styled
def fig_interactions(a: StudyAnalysis) -> Figure | None:
    """Interaction plots: the primary metric against one factor's levels, one line per
    level of the other factor, mean with its 95 % CI (on the metric's scale); one panel
    per pair of factors, found interactions first. None for a study with < 2 factors."""
    items = sorted(a.interactions, key=lambda i: (not i.found, i.p_holm))[:4]
    items = [i for i in items if any(i.cells.values())]
    if not items:
        return None
    fig = _new_figure(figsize=(6.5 * len(items), 5.2))
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


FIGURES.append(
    FigureSpec("interactions", "Results", "Interactions between factors",
               "Mean test accuracy and its 95 % CI (logit scale) for each level of one factor, "
               "one line per level of the other; non-parallel lines with a small ANOVA p are an "
               "interaction: compare the first factor within each level of the second.",
               fig_interactions)
)


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
    fig = _new_figure(figsize=(6.5 * len(paths), 5.2))
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
    _legend_below(fig, axes)
    return fig


FIGURES.append(
    FigureSpec("tuning_sensitivity", "Tuning", "Sensitivity to the tuned parameters",
               "The tuning metric on validation data against each tuned parameter: every "
               "tuning trial is a dot (open: pruned, cross: diverged or failed), one colour "
               "per variant, a star at the setting each variant was evaluated with. A flat "
               "curve means the variant is robust to that parameter; a best value at the "
               "edge of the range means the range should be widened.",
               fig_tuning_sensitivity)
)


def figure_bytes(fig: Figure, dpi: int = 110, svg: bool = False) -> tuple[bytes, str | None]:
    """The figure rendered in memory through the Agg canvas (whatever the global
    backend): PNG bytes, and the SVG text when ``svg``."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=dpi, metadata={"Software": None})
        text = None
        if svg:
            out = io.StringIO()
            fig.savefig(out, format="svg", metadata={"Date": None})
            text = out.getvalue()
    return png.getvalue(), text


def save_figure(
    fig: Figure, folder: Path, name: str, dpi: int = 110, svg: bool = True
) -> dict[str, Path]:
    """Write ``folder/name.png`` (and ``folder/name.svg`` unless ``svg=False``)
    atomically (rendered in memory, then a temporary file renamed over the old one: a
    killed process never leaves half a figure); returns the paths written."""
    png, text = figure_bytes(fig, dpi, svg)
    return write_figure_files(folder, name, png, text)


def write_figure_files(folder: Path, name: str, png: bytes, svg: str | None) -> dict[str, Path]:
    """Write rendered bytes as ``folder/name.png`` (+ ``.svg`` when given), atomically."""
    from ablab.store import atomic_write_bytes, atomic_write_text

    paths = {"png": folder / f"{name}.png"}
    atomic_write_bytes(paths["png"], png)
    if svg is not None:
        paths["svg"] = folder / f"{name}.svg"
        atomic_write_text(paths["svg"], svg)
    return paths


@styled
def fig_run_curves(history: list[dict], title: str = "") -> Figure | None:
    """One run's learning curves (a ``RunResult``'s history): loss and accuracy per epoch,
    train and validation; None without history."""
    if not history:
        return None
    fig = _new_figure(figsize=(9, 3.2), layout="constrained")
    axes = fig.subplots(1, 2)
    epochs = [h.get("epoch") for h in history]
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for split, style in (("train", "-"), ("val", "--")):
            ys = [h.get(f"{split}_{metric}") for h in history]
            if any(isinstance(y, (int, float)) for y in ys):
                ys = [y if isinstance(y, (int, float)) else np.nan for y in ys]
                ax.plot(epochs, ys, style, lw=2, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig
