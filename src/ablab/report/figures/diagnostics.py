"""Figures of what the probes recorded: dead units and zero activations per layer,
activation histograms, gradient norms per layer, decision boundaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ablab.analysis.curves import (
    activation_hist,
    boundary_of,
    display_grid,
    probe_matrix,
)
from ablab.report.figures.style import (
    colorbar,
    grid_shape,
    integer_locator,
    legend_below,
    margins,
    new_figure,
    panels,
    power_norm,
    short_label,
    styled,
    variant_colors,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablab.analysis import StudyAnalysis, Variant


def _unit_heatmap(a: StudyAnalysis, key: str, title: str, cbar: str) -> Figure | None:
    colors = variant_colors(a)
    mats = [(v, probe_matrix(v, "dead_units", key)) for v in a.variants]
    mats = [(v, m) for v, m in mats if m is not None]
    shown = [(v, m) for v, m in mats if m["defined"]]
    undefined = [short_label(a, v) for v, m in mats if not m["defined"]]
    if not shown:
        return None
    rows, cols = grid_shape(len(shown), max_cols=2)
    height = 1.4 + 0.9 * max(len(m["layers"]) for _, m in shown)
    fig = new_figure(figsize=(6.5 * cols + 1.5, height * rows + 1.2))
    top = 0.8 + (0.35 if undefined else 0.0)
    axes = panels(fig, rows, cols, left=1.2, right=1.5, top=top, bottom=0.7, wgap=1.3,
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
        ax.xaxis.set_major_locator(integer_locator())
        ax.set_title(short_label(a, v), color=colors[v.label], fontsize=13)
        ax.set_xlabel("epoch")
        ax.grid(False)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    colorbar(fig, image, top, 0.7, cbar, shrink=0.9)
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
    fig = new_figure(figsize=(5.2 * cols + 1.5, 2.9 * rows + 1.2))
    axes = panels(fig, rows, cols, left=1.0, right=1.4, top=1.05, bottom=0.75, wgap=0.6,
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
                norm=power_norm(0.5), interpolation="nearest",
                extent=(e[0] - 0.5, e[-1] + 0.5, h["edges"][0], h["edges"][-1]),
            )
            ax.grid(False)
            ax.xaxis.set_major_locator(integer_locator())
            ax.set_title(f"{short_label(a, v)}\n{h['layer']} ({h['kind']})",
                         color=colors[v.label], fontsize=12)
            if c == 0:
                ax.set_ylabel("activation value")
            if r == rows - 1:
                ax.set_xlabel("epoch")
    fig.suptitle("Activation distributions per layer over training (probe batch, all seeds)")
    colorbar(fig, image, 1.05, 0.75, "share of values in bin (sqrt scale)", shrink=0.6)
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
    rows, cols = grid_shape(len(layers))
    fig = new_figure(figsize=(5.2 * cols, 4.2 * rows + 1.6))
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
        ax.xaxis.set_major_locator(integer_locator())
        ax.set_title(f"layer {name}")
        ax.set_xlabel("epoch")
        if i % cols == 0:
            ax.set_ylabel("mean gradient norm (log)")
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    fig.suptitle("Gradient norm per layer (mean over batches and seeds)")
    margins(fig, left=1.1, right=0.25, top=0.95, bottom=0.9, wgap=0.6, hgap=1.0)
    legend_below(fig, axes)
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
    fig = new_figure(figsize=(4.4 * len(cols) + 1.6, 4.2 * len(rows) + 0.8))
    axes = panels(fig, len(rows), len(cols), left=0.25, right=1.7, top=1.0, bottom=0.2,
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
        colorbar(fig, image, 1.0, 0.2, "P(class 1)", shrink=0.6)
    return fig
